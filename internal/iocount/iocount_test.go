package iocount

import (
	"bytes"
	"errors"
	"testing"
)

type short struct{ max int }

func (s short) Write(p []byte) (int, error) {
	if len(p) > s.max {
		return s.max, errors.New("short write")
	}
	return len(p), nil
}

func TestWriterCountsWhatWasTaken(t *testing.T) {
	var buf bytes.Buffer
	w := &Writer{W: &buf}
	w.Write([]byte("hello "))
	w.Write([]byte("world"))
	if w.N != 11 || buf.String() != "hello world" {
		t.Fatalf("N %d, wrote %q", w.N, buf.String())
	}
	s := &Writer{W: short{max: 3}}
	if _, err := s.Write([]byte("abcdef")); err == nil || s.N != 3 {
		t.Fatalf("short write: N %d, err %v; want 3 and the error", s.N, err)
	}
}
