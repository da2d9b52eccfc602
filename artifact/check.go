package artifact

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"k2.dev/k2/artifact/k8sfile"
	"k2.dev/k2/internal/usererr"
)

// PosError is a problem found while building one instruction of a K8sfile
// (a missing ADD path, an unreadable values= file, a chart that does not
// load): its position and instruction, and the cause. It renders like a
// *k8sfile.Error, "K8sfile:3:1: ADD: ./charts/web does not exist …".
type PosError struct {
	Pos         k8sfile.Pos
	Instruction string
	Err         error
}

func (e *PosError) Error() string {
	return (&k8sfile.Error{Pos: e.Pos, Instruction: e.Instruction, Msg: e.Err.Error()}).Error()
}

func (e *PosError) Unwrap() error { return e.Err }

// BuildFile reads the K8sfile at path and builds it with opts (see [Build]),
// reporting every problem in one pass: syntax errors and the problems of
// the build context (ADD paths, values= files, local charts, FROM, charts
// to fetch) together, sorted by line, at most k8sfile.MaxErrors of them.
// When the file has syntax errors nothing is written to the store; the
// instructions without errors are still checked. It returns the parser's
// warnings. Errors are *usererr.Error: KindInvalid (exit 3) when any
// problem is invalid input, else the kind of the first (a registry error:
// 5); a missing file says to create one.
func BuildFile(ctx context.Context, path string, opts BuildOptions) (*BuildResult, []string, error) {
	src, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("reading K8sfile: %w", err), "create a K8sfile there or pass -f FILE")
	}
	if err != nil {
		return nil, nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("reading K8sfile: %w", err), "")
	}
	f, warns, parseErr := k8sfile.ParsePartial(path, src)
	if opts.Context == nil {
		opts.Context = os.DirFS(filepath.Dir(path))
	}
	if parseErr != nil {
		opts.Check = true // a partial file is never written as an artifact
	}
	if opts.Store == nil {
		return nil, warns, errors.New("building: Store is required")
	}
	unlock, err := opts.Store.lock(ctx)
	if err != nil {
		return nil, warns, err
	}
	defer unlock()
	res, err := newBuilder(f, opts).build(ctx, nil)
	if ctx.Err() != nil {
		return nil, warns, err
	}
	if parseErr == nil && err == nil {
		return res, warns, nil
	}
	var errs []error
	for _, e := range k8sfile.Errors(parseErr) {
		errs = append(errs, e)
	}
	return nil, warns, sortedErrors(append(errs, flatten(err)...), k8sfile.Errors(parseErr))
}

// flatten lists the leaves of a tree of joined errors (a join may be
// wrapped in a *usererr.Error without hint, as sortedErrors returns it),
// keeping each leaf's own *usererr.Error wrapper: its exit kind.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	inner := err
	if ue, ok := err.(*usererr.Error); ok && ue.Hint == "" { //nolint:errorlint // the top of the tree only
		inner = ue.Err
	}
	j, ok := inner.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, flatten(e)...)
	}
	return out
}

// position returns the K8sfile line and column an error is about.
func position(err error) (k8sfile.Pos, bool) {
	var pe *PosError
	if errors.As(err, &pe) {
		return pe.Pos, true
	}
	var ke *k8sfile.Error
	if errors.As(err, &ke) {
		return ke.Pos, true
	}
	return k8sfile.Pos{}, false
}

// sortedErrors joins errs (trees of joined errors are flattened) sorted by
// K8sfile position, those without one last, dropping a build problem on a
// line that already has a syntax error (in parsed), capped at
// k8sfile.MaxErrors. The result is a *usererr.Error of KindInvalid if any
// problem is, else of the first problem's kind; nil when errs holds none.
func sortedErrors(errs []error, parsed []*k8sfile.Error) error {
	var all []error
	for _, e := range errs {
		all = append(all, flatten(e)...)
	}
	if len(all) == 0 {
		return nil
	}
	syntax := map[int]bool{}
	for _, e := range parsed {
		syntax[e.Pos.Line] = true
	}
	all = slices.DeleteFunc(all, func(e error) bool {
		var ke *k8sfile.Error
		if errors.As(e, &ke) {
			return false
		}
		p, ok := position(e)
		return ok && syntax[p.Line]
	})
	slices.SortStableFunc(all, func(a, b error) int {
		pa, oka := position(a)
		pb, okb := position(b)
		switch {
		case !oka && !okb:
			return 0
		case !oka:
			return 1
		case !okb:
			return -1
		}
		return cmp.Or(cmp.Compare(pa.Line, pb.Line), cmp.Compare(pa.Col, pb.Col))
	})
	kind := usererr.KindFailure
	for i, e := range all {
		k := usererr.Kind(usererr.ExitCode(nil, e))
		if errors.As(e, new(*k8sfile.Error)) {
			k = usererr.KindInvalid
		}
		if i == 0 || k == usererr.KindInvalid {
			kind = k
		}
		if k == usererr.KindInvalid {
			break
		}
	}
	if n := len(all) - k8sfile.MaxErrors; n > 0 {
		all = append(all[:k8sfile.MaxErrors], fmt.Errorf("… and %d more", n))
	}
	if len(all) == 1 {
		var ue *usererr.Error
		if errors.As(all[0], &ue) {
			return all[0]
		}
	}
	return usererr.Wrap(kind, errors.Join(all...), "")
}
