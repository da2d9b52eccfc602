package node

import (
	"context"
	"fmt"
	"io"
	"time"

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

// ImageSyncInterval is how often a node with Options.MoreImages looks for
// images the cluster gained since it started.
var ImageSyncInterval = 10 * time.Second

// images is the component that imports the node's images (Options.Images,
// in order) into containerd before the kubelet starts, then, with
// Options.MoreImages, those the cluster gains later; one already there is
// skipped.
type images struct{ n *node }

func (*images) Name() string               { return "images" }
func (*images) Init(context.Context) error { return nil }
func (*images) Stop(context.Context) error { return nil }

func (c *images) Start(ctx context.Context) error {
	for _, im := range c.n.o.Images {
		if err := c.ensure(ctx, im, true); err != nil {
			return err
		}
	}
	return nil
}

// Run imports the images MoreImages lists that the node lacks, until the
// node stops. A failed listing or import is logged and tried again.
func (c *images) Run(ctx context.Context) error {
	if c.n.o.MoreImages == nil {
		return nil
	}
	tick := time.NewTicker(ImageSyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		more, err := c.n.o.MoreImages(ctx)
		if err != nil {
			c.n.log.Debug("listing the cluster's images", "err", err)
			continue
		}
		for _, im := range more {
			if err := c.ensure(ctx, im, false); err != nil && ctx.Err() == nil {
				c.n.log.Warn("importing an image the cluster gained", "image", im.Name, "err", err)
			}
		}
	}
}

// ensure imports im unless containerd has it.
func (c *images) ensure(ctx context.Context, im Image, logPresent bool) error {
	n := c.n
	if _, err := n.containerd.GetImage(namespaces.WithNamespace(ctx, CRINamespace), im.Name); err == nil {
		if logPresent {
			n.log.Info("image already present", "image", im.Name)
		}
		return nil
	}
	t := time.Now()
	r, err := im.Open(ctx)
	if err != nil {
		return fmt.Errorf("image %s: %w", im.Name, err)
	}
	names, err := importArchive(ctx, n.containerd, r, im.Pinned)
	r.Close()
	if err != nil {
		return fmt.Errorf("image %s: %w", im.Name, err)
	}
	n.log.Info("image imported", "image", im.Name, "names", names, "took", time.Since(t).Round(time.Millisecond))
	return nil
}
