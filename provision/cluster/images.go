package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/join"
	"k2.dev/k2/internal/output"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/provision/pki"
)

// vendoredImage is one image archive an artifact carries (k2 build
// --vendor-images): an OCI image-layout tar that nodes import.
type vendoredImage struct {
	Ref    string // normalised reference, the name nodes import it under
	Digest string // "sha256:<hex>" of the archive, the artifact layer's digest
	Size   int64
}

// imageSource is what the images step needs of an artifact.
type imageSource interface {
	vendored() []vendoredImage
	open(ctx context.Context, ref string) (io.ReadCloser, error)
}

// artifactImages adapts an artifact's vendored images.
type artifactImages struct{ a *artifact.Artifact }

func (s artifactImages) vendored() []vendoredImage {
	var out []vendoredImage
	for _, im := range s.a.VendoredImages() {
		out = append(out, vendoredImage{Ref: im.Ref, Digest: im.Archive.Digest, Size: im.Archive.Size})
	}
	return out
}

func (s artifactImages) open(ctx context.Context, ref string) (io.ReadCloser, error) {
	return s.a.ImageArchive(ctx, ref)
}

var _ imageSource = artifactImages{}

// uploadImages copies the artifact's vendored images to the control
// plane's join endpoint, which serves them to nodes: the cluster then needs
// no registry for them (airgap). Images the server already holds are
// skipped, so a resumed deploy uploads only what is missing.
func (c *run) uploadImages(ctx context.Context, st *engine.State) error {
	src := artifactImages{c.o.Artifact}
	if len(src.vendored()) == 0 {
		st.Progress("", 100, "no vendored images in %s", c.o.Artifact.Ref)
		return nil
	}
	servers, err := c.servers(ctx, st)
	if err != nil {
		return err
	}
	dir := filepath.Join(c.dir(st), "pki")
	caPEM, err := os.ReadFile(filepath.Join(dir, pki.CACert))
	if err != nil {
		return fmt.Errorf("reading the cluster CA: %w", err)
	}
	admin, err := tls.LoadX509KeyPair(filepath.Join(dir, pki.AdminCert), filepath.Join(dir, pki.AdminKey))
	if err != nil {
		return fmt.Errorf("reading the admin certificate: %w", err)
	}
	// Every server keeps them: a node fetches from whichever answers.
	for _, s := range servers {
		t := imageTarget{url: s.JoinURL, caPEM: caPEM, admin: admin}
		if err := waitJoinEndpoint(ctx, t, c.o.ReadyTimeout); err != nil {
			return err
		}
		if err := pushImages(ctx, src, t, func(pct int, msg string) {
			st.Progress(s.Name, pct, "%s", msg)
		}); err != nil {
			return err
		}
	}
	return nil
}

// waitJoinEndpoint waits until the join endpoint answers: `k2 server`
// starts it beside the controllers once the apiserver is ready, so it may
// still refuse connections right after control-plane-ready.
func waitJoinEndpoint(ctx context.Context, t imageTarget, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		_, err := join.ListImages(ctx, t.url, t.caPEM, t.admin)
		var op *net.OpError
		if err == nil || !errors.As(err, &op) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the join endpoint %s: %w (last error: %w)", t.url, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// imageTarget is a join endpoint and the admin credentials to upload to it.
type imageTarget struct {
	url   string
	caPEM []byte
	admin tls.Certificate
}

// pushImages uploads every image of src that t lacks, reporting progress
// in percent of the bytes of all images.
func pushImages(ctx context.Context, src imageSource, t imageTarget, progress func(pct int, msg string)) error {
	ims := src.vendored()
	var total, done int64
	for _, im := range ims {
		total += im.Size
	}
	uploaded := 0
	for _, im := range ims {
		has, err := join.HasImage(ctx, t.url, t.caPEM, t.admin, im.Digest)
		if err != nil {
			return fmt.Errorf("uploading image %s: %w", im.Ref, err)
		}
		if has {
			done += im.Size
			progress(percent(done, total), fmt.Sprintf("image %s already on the control plane", im.Ref))
			continue
		}
		rc, err := src.open(ctx, im.Ref)
		if err != nil {
			return err
		}
		progress(percent(done, total), fmt.Sprintf("uploading image %s (%s)", im.Ref, output.Bytes(im.Size)))
		pr := &progressReader{r: rc, every: time.Second, report: func(n int64) {
			progress(percent(done+n, total), fmt.Sprintf("uploading image %s: %s of %s", im.Ref, output.Bytes(n), output.Bytes(im.Size)))
		}}
		err = join.UploadImage(ctx, t.url, t.caPEM, t.admin, im.Ref, im.Digest, im.Size, pr)
		rc.Close()
		if err != nil {
			return err
		}
		done += im.Size
		uploaded++
	}
	progress(100, fmt.Sprintf("%d of %d vendored images uploaded, %d already there (%s in all)", uploaded, len(ims), len(ims)-uploaded, output.Bytes(total)))
	return nil
}

func percent(done, total int64) int {
	if total <= 0 {
		return 100
	}
	return int(done * 100 / total)
}

// progressReader calls report with the bytes read so far at most once per
// every.
type progressReader struct {
	r      io.Reader
	n      int64
	every  time.Duration
	last   time.Time
	report func(n int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if now := time.Now(); now.Sub(p.last) >= p.every {
		if !p.last.IsZero() {
			p.report(p.n)
		}
		p.last = now
	}
	return n, err
}
