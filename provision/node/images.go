package node

import (
	"context"
	"fmt"
	"io"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/platforms"
)

// CRI labels on images k2 imports: "managed" makes the CRI plugin list
// them; "pinned" keeps the kubelet's image GC off the pause image.
const (
	criImageLabel  = "io.cri-containerd.image"
	criPinnedLabel = "io.cri-containerd.pinned"
)

// importArchive imports an OCI or Docker image archive into the node's
// containerd, unpacked for the overlayfs snapshotter, and returns the
// names it now holds.
func importArchive(ctx context.Context, c *containerd.Client, r io.Reader, pinned bool) ([]string, error) {
	ctx = namespaces.WithNamespace(ctx, CRINamespace)
	labels := map[string]string{criImageLabel: "managed"}
	if pinned {
		labels[criPinnedLabel] = "pinned"
	}
	imgs, err := c.Import(ctx, r,
		containerd.WithImportPlatform(platforms.Default()),
		containerd.WithImageLabels(labels),
		containerd.WithSkipDigestRef(func(string) bool { return true }))
	if err != nil {
		return nil, fmt.Errorf("importing an image archive: %w", err)
	}
	var names []string
	for _, im := range imgs {
		img := containerd.NewImageWithPlatform(c, im, platforms.Default())
		if err := img.Unpack(ctx, "overlayfs"); err != nil {
			return names, fmt.Errorf("unpacking %s: %w", im.Name, err)
		}
		names = append(names, im.Name)
	}
	return names, nil
}
