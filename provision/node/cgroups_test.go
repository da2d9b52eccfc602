package node

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestRemoveCgroupRootEveryHierarchy makes a node's cgroup tree in every
// hierarchy of this host, the v2 one mounted beside v1 included (where runc
// mirrors containers' groups), and checks removeCgroupRoot leaves none.
// Real cgroupfs: needs root.
func TestRemoveCgroupRootEveryHierarchy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make cgroups")
	}
	root := fmt.Sprintf("/k2/test-remove-%d", os.Getpid())
	hs := cgroupCleanupHierarchies()
	if len(hs) == 0 {
		t.Fatal("no cgroup hierarchy found under /sys/fs/cgroup")
	}
	for _, h := range hs {
		if err := os.MkdirAll(filepath.Join(h, root, "kubepods", "besteffort", "pod1"), 0o755); err != nil {
			t.Fatalf("making a group in %s: %v", h, err)
		}
	}
	if left := removeCgroupRoot(root); len(left) > 0 {
		t.Fatalf("groups left: %v", left)
	}
	for _, h := range hs {
		if _, err := os.Stat(filepath.Join(h, root)); !os.IsNotExist(err) {
			t.Errorf("%s still exists (%v)", filepath.Join(h, root), err)
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.procs"); err == nil && cgroupV1() {
		found := false
		for _, h := range hs {
			found = found || h == "/sys/fs/cgroup/unified"
		}
		if !found {
			t.Error("the hybrid v2 hierarchy /sys/fs/cgroup/unified is not cleaned")
		}
	}
}
