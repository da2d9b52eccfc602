package output_test

import (
	"testing"

	"k2.dev/k2/internal/output"
)

func TestBytes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0B"},
		{512, "512B"},
		{1023, "1023B"},
		{1 << 10, "1Ki"},
		{25000, "24.4Ki"},
		{512 << 20, "512Mi"},
		{1536 << 20, "1536Mi"},
		{4 << 30, "4Gi"},
		{20 << 30, "20Gi"},
		{4<<30 + 1, "4.0Gi"},
		{12345678, "11.8Mi"},
		{3 << 40, "3Ti"},
		{1 << 60, "1Ei"},
		{-(2 << 20), "-2Mi"},
	} {
		if got := output.Bytes(tc.n); got != tc.want {
			t.Errorf("Bytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
