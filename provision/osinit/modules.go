package osinit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// loadModules loads the drivers for the machine's devices (coldplug: each
// device's modalias matched against modules.alias, repeated while loading
// a bus driver brings new devices) and every module the list names, with
// their dependencies, through u-root's module prober. It returns how many
// modules it asked for.
func loadModules(ctx context.Context, list string) (int, error) {
	var u unix.Utsname
	unix.Uname(&u)
	dir := filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
	p, err := kmodule.NewProber(kmodule.ProbeOpts{})
	if err != nil {
		return 0, fmt.Errorf("reading %s/modules.dep: %w", dir, err)
	}
	l := &loader{p: p, tried: map[string]bool{}}
	names, err := readList(list)
	if err != nil {
		l.errs = append(l.errs, err)
	}
	aliases, err := readAliases(filepath.Join(dir, "modules.alias"))
	if err != nil {
		l.errs = append(l.errs, err)
	}
	// Devices first (disks and NICs come up sooner), then the list.
	for pass := 0; pass < 4; pass++ {
		if l.load(ctx, matchDevices(aliases, "/sys/devices")) == 0 {
			break
		}
	}
	l.load(ctx, names)
	return len(l.tried), errors.Join(l.errs...)
}

type loader struct {
	p     *kmodule.Prober
	mu    sync.Mutex
	tried map[string]bool
	errs  []error
}

// load probes the names not tried yet, four at a time; it returns how many
// it tried.
func (l *loader) load(ctx context.Context, names []string) int {
	var g errgroup.Group
	g.SetLimit(4)
	n := 0
	for _, name := range names {
		if l.tried[name] {
			continue
		}
		l.tried[name] = true
		n++
		g.Go(func() error {
			if err := l.p.Probe(name, ""); err != nil && !errors.Is(err, unix.ENODEV) && !strings.Contains(err.Error(), "no such device") {
				// (ENODEV: the hardware is absent, crc32c_intel on a CPU
				// without SSE 4.2.)
				l.mu.Lock()
				l.errs = append(l.errs, fmt.Errorf("loading module %s: %w", name, err))
				l.mu.Unlock()
			}
			return nil
		})
	}
	g.Wait()
	return n
}

func readList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the module list: %w", err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if n := strings.TrimSpace(sc.Text()); n != "" && !strings.HasPrefix(n, "#") {
			names = append(names, n)
		}
	}
	return names, sc.Err()
}

// alias is one line of modules.alias: a modalias pattern and its module.
type alias struct {
	pattern, prefix, module string
}

func readAliases(path string) ([]alias, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []alias
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) != 3 || fl[0] != "alias" {
			continue
		}
		prefix := fl[1]
		if i := strings.IndexAny(prefix, "*?["); i >= 0 {
			prefix = prefix[:i]
		}
		out = append(out, alias{pattern: fl[1], prefix: prefix, module: fl[2]})
	}
	return out, sc.Err()
}

// matchDevices returns the modules whose aliases match a device's
// modalias under sysDevices, in order of first match.
func matchDevices(aliases []alias, sysDevices string) []string {
	var mods []string
	seen := map[string]bool{}
	filepath.WalkDir(sysDevices, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "modalias" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		ma := strings.TrimSpace(string(b))
		for _, a := range aliases {
			if !strings.HasPrefix(ma, a.prefix) || seen[a.module] {
				continue
			}
			if ok, _ := path.Match(a.pattern, ma); ok {
				seen[a.module] = true
				mods = append(mods, a.module)
			}
		}
		return nil
	})
	return mods
}
