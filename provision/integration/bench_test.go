package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"k2.dev/k2/provision/apply"
)

// BenchmarkApply1000 applies 1,000 versionless objects (80% ConfigMaps,
// 10% Services, 10% Apps) to a fresh namespace: discovery, resolution, one
// GET and one server-side apply each.
// The deploy engine's target is ≤ 10 s for an artifact of 1,000 objects.
func BenchmarkApply1000(b *testing.B) {
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		ns := fmt.Sprintf("bench-%d", i)
		var sb strings.Builder
		for j := 0; j < 1000; j++ {
			switch j % 10 {
			case 0:
				fmt.Fprintf(&sb, "kind: Service\nmetadata: {name: s%d}\nspec: {ports: [{port: 80}]}\n---\n", j)
			case 1:
				fmt.Fprintf(&sb, "kind: App\nmetadata: {name: a%d}\nspec: {image: registry.local/a:v1, ports: [80]}\n---\n", j)
			default:
				fmt.Fprintf(&sb, "kind: ConfigMap\nmetadata: {name: c%d}\ndata: {k: v%d}\n---\n", j, j)
			}
		}
		objs, err := apply.Decode(strings.NewReader(fmt.Sprintf("kind: Namespace\nmetadata: {name: %s}\n---\n", ns)+sb.String()), "bench")
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := apply.Apply(context.Background(), restCfg, objs, apply.Options{Namespace: ns})
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Objects) != 1001 {
			b.Fatalf("%d results", len(res.Objects))
		}
	}
}
