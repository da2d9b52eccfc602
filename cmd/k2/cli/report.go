package cli

import (
	"context"
	"io"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/output"
	"k2.dev/k2/state"
)

// opener opens what a reporting command works on and returns how to close
// it.
type opener[R any] func(ctx context.Context) (R, func(), error)

// report is what a reporting command does: parse -o, open R, call, and
// render the result as JSON or, for text, with text. call's error is
// returned as it is; nothing is rendered then.
func report[R, T any](ctx context.Context, g *globals, open opener[R], call func(context.Context, R) (T, error), text func(io.Writer, T) error) error {
	f, err := g.format()
	if err != nil {
		return err
	}
	r, closeR, err := open(ctx)
	if err != nil {
		return err
	}
	defer closeR()
	v, err := call(ctx, r)
	if err != nil {
		return err
	}
	return output.Render(g.stdout, f, v, func(w io.Writer) error { return text(w, v) })
}

// stateDB is the opener of the state database ($K2_HOME/state.db).
func (g *globals) stateDB(ctx context.Context) (*state.Store, func(), error) {
	s, err := g.openState(ctx)
	if err != nil {
		return nil, nil, err
	}
	return s, func() { s.Close() }, nil
}

// artifactStore is the opener of the local artifact store.
func (g *globals) artifactStore(ctx context.Context) (*artifact.Store, func(), error) {
	s, err := g.openStore(ctx)
	if err != nil {
		return nil, nil, err
	}
	return s, func() {}, nil
}
