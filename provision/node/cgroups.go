package node

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const cgroupFS = "/sys/fs/cgroup"

// cgroupHierarchies are the mounted cgroup hierarchies: the v2 root alone,
// or every v1 controller directory (named ones like name=systemd too).
func cgroupHierarchies() []string {
	if !cgroupV1() {
		return []string{cgroupFS}
	}
	entries, err := os.ReadDir(cgroupFS)
	if err != nil {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, e := range entries {
		p := filepath.Join(cgroupFS, e.Name())
		real, err := filepath.EvalSymlinks(p) // cpu,cpuacct links
		if err != nil || seen[real] || e.Name() == "unified" {
			continue
		}
		if fi, err := os.Stat(real); err == nil && fi.IsDir() {
			seen[real] = true
			out = append(out, real)
		}
	}
	return out
}

// cgroupCleanupHierarchies are where a node's groups can exist: the
// hierarchies above and, on a v1 host with the v2 hierarchy mounted beside
// them (/sys/fs/cgroup/unified, "hybrid"), that one too: runc mirrors every
// container's group there, and nothing else removes them.
func cgroupCleanupHierarchies() []string {
	hs := cgroupHierarchies()
	if cgroupV1() {
		u := filepath.Join(cgroupFS, "unified")
		if fi, err := os.Stat(filepath.Join(u, "cgroup.procs")); err == nil && !fi.IsDir() {
			hs = append(hs, u)
		}
	}
	return hs
}

// ensureCgroupRoot creates the node's cgroup root in every hierarchy (the
// kubelet refuses a cgroup root that does not exist). In the v1 cpuset
// hierarchy a new group starts with no CPUs or memory nodes, so each level
// copies its parent's. In v2 a group has only the controllers its parent
// hands down (cgroup.subtree_control), and the kubelet refuses a root
// without cpu, cpuset, memory, pids and hugetlb: each level hands down
// what it has.
func ensureCgroupRoot(root string) error {
	v2 := !cgroupV1()
	for _, h := range cgroupHierarchies() {
		dir := h
		for _, part := range strings.Split(strings.Trim(root, "/"), "/") {
			parent := dir
			dir = filepath.Join(dir, part)
			if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
				return err
			}
			if v2 {
				delegateControllers(parent)
				delegateControllers(dir)
			}
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil && strings.TrimSpace(string(b)) == "" {
					if pb, err := os.ReadFile(filepath.Join(parent, f)); err == nil {
						_ = os.WriteFile(filepath.Join(dir, f), pb, 0o644)
					}
				}
			}
		}
	}
	return nil
}

// delegateControllers enables, for dir's children, every controller dir
// has. One at a time: a controller the kernel refuses (a v2 group holding
// processes cannot delegate) leaves the others on, and the kubelet names
// what is missing.
func delegateControllers(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return
	}
	for _, c := range strings.Fields(string(b)) {
		_ = os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+c), 0o644)
	}
}

// removeCgroupRoot kills every process left under the node's cgroup root
// and removes its groups, deepest first, in every hierarchy. It returns
// the groups it could not remove.
func removeCgroupRoot(root string) []string {
	var left []string
	for _, h := range cgroupCleanupHierarchies() {
		top := filepath.Join(h, strings.Trim(root, "/"))
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			for i := 0; i < 50; i++ {
				killProcs(d)
				if err := os.Remove(d); err == nil || os.IsNotExist(err) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if _, err := os.Stat(d); err == nil {
				left = append(left, d)
			}
		}
	}
	return left
}

func killProcs(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// killByArg kills every process whose command line holds arg (the node's
// containerd socket path names its containerd and shims).
func killByArg(arg string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, a := range strings.Split(string(b), "\x00") {
			if a == arg || strings.HasPrefix(a, arg) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
		}
	}
}
