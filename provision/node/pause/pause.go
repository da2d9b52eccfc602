// Package pause builds the pause image that holds every pod sandbox's
// namespaces, without network access and without any file beside the k2
// binary: the executable is a 288-byte static ELF assembled below, wrapped
// into a one-layer OCI image.
//
// The agent imports the image into containerd at start (see
// [WriteOCIArchive]) and sets the kubelet's pod-infra image and containerd's
// CRI sandbox_image to [Ref], so no node ever pulls a pause image.
package pause

import (
	"fmt"
	"io"
	"runtime"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"k2.dev/k2/internal/ociarchive"
)

// Ref is the pause image's reference. The kubelet's pod sandbox image and
// containerd's CRI sandbox_image are set to it; the registry host k2.dev
// is never contacted because the image is imported before the kubelet
// starts.
const Ref = "k2.dev/pause:3.10"

var (
	once   sync.Once
	cached v1.Image
	err    error
)

// Image returns the pause image for linux/runtime.GOARCH: one layer holding
// /pause, entrypoint ["/pause"]. It is deterministic: every call, in every
// k2 binary of this version, gives the same digest. Only amd64 is
// supported so far.
func Image() (v1.Image, error) {
	once.Do(func() {
		exe, e := Executable(runtime.GOARCH)
		if e != nil {
			err = e
			return
		}
		cached, err = ociarchive.BinaryImage("pause", exe, runtime.GOARCH)
	})
	return cached, err
}

// Executable returns the pause executable for a Linux architecture (GOARCH
// spelling). It blocks in pause(2) forever, exits 0 on SIGTERM or SIGINT
// (it installs handlers, since as PID 1 of a PID namespace the default
// actions would be ignored) and sets SIGCHLD to SIG_IGN so the kernel reaps
// any child that ends up reparented to it.
func Executable(arch string) ([]byte, error) {
	switch arch {
	case "amd64":
		return amd64ELF(), nil
	}
	return nil, fmt.Errorf("pause image: no pause executable for linux/%s yet (k2 builds one for amd64 only)", arch)
}

// WriteOCIArchive writes the pause image to w as an OCI image-layout tar
// named [Ref], ready for containerd's client.Import.
func WriteOCIArchive(w io.Writer) error {
	img, err := Image()
	if err != nil {
		return err
	}
	return ociarchive.Write(w, []ociarchive.Named{{Ref: Ref, Image: img}})
}
