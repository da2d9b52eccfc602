package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/spf13/cobra"

	"k2.dev/k2/artifact"
	"k2.dev/k2/artifact/k8sfile"
	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
)

// buildFlags are k2 build's flags.
type buildFlags struct {
	tag, file        string
	check, allowBeta bool
	pull             bool
	vendorImages     bool
	remote           remoteFlags
}

func newBuildCmd(g *globals) *cobra.Command {
	var b buildFlags
	cmd := &cobra.Command{
		Use:   "build -t REF [DIR]",
		Short: "Build a cluster artifact from a K8sfile",
		Long: `Build turns the K8sfile in DIR (default .) into a reproducible OCI artifact
in the local store ($K2_HOME/store): one layer per ADD, INSTALL and APP, after
the layers inherited from FROM, and a config holding the resolved cluster spec.

Charts named by INSTALL are fetched now and vendored, so deploying needs no
access to chart sources. The container images the workloads use (APP image=,
containers of Pod templates in manifests and charts) are listed in the
artifact; with --vendor-images each is also pulled for linux/` + runtime.GOARCH + `
and stored as a layer that nodes import at join: no registry needed at deploy
(airgap). An APP image with ${ARG} is resolved with the ARG's default. Every manifest and rendered chart is checked: an
apiVersion with alpha or beta fails the build unless --allow-beta.
The same inputs always give the same digest.

Examples:
  k2 build -t hello:v1 examples/hello
  k2 build -t localhost:5000/shop:1.2 -f deploy/K8sfile .
  k2 build --check .          validate only, write nothing: every syntax and
                              build-context problem at once, sorted by line
  k2 build --vendor-images -t shop:1.2 .   carry the images too (airgap)`,
		Args: rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error { return runBuild(cmd.Context(), g, &b, args) },
	}
	fl := cmd.Flags()
	fl.StringVarP(&b.tag, "tag", "t", "", "reference to tag the artifact with (name:tag or host/repo:tag)")
	fl.StringVarP(&b.file, "file", "f", "", "K8sfile to build (default DIR/K8sfile)")
	fl.BoolVar(&b.check, "check", false, "only validate: resolve FROM, fetch and render charts, check API versions; write nothing")
	fl.BoolVar(&b.allowBeta, "allow-beta", false, "accept alpha and beta apiVersions (recorded in the artifact)")
	fl.BoolVar(&b.pull, "pull", false, "pull the FROM reference from its registry even if the local store has it")
	fl.BoolVar(&b.vendorImages, "vendor-images", false,
		"pull every container image the APPs, manifests and charts use (linux/"+runtime.GOARCH+") and store it in the artifact, so deploying needs no registry")
	b.remote.register(cmd)
	return cmd
}

// runBuild builds (or with --check only validates) the K8sfile of the
// context directory in args and renders the result.
func runBuild(ctx context.Context, g *globals, b *buildFlags, args []string) error {
	f, err := g.format()
	if err != nil {
		return err
	}
	dir := "."
	if len(args) == 1 {
		dir = args[0]
	}
	if b.tag == "" && !b.check {
		return usererr.Usage("missing -t REF; name the artifact, e.g. k2 build -t hello:v1 %s", dir)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return usererr.Usage("build context %s is not a directory", dir)
	}
	file := b.file
	if file == "" {
		file = filepath.Join(dir, k8sfile.DefaultName)
	}
	store, err := g.openStore(ctx)
	if err != nil {
		return err
	}
	repos, err := artifact.LoadRepos(artifact.ReposFile(g.home))
	if err != nil {
		return err
	}
	log := g.logger()
	res, warns, err := artifact.BuildFile(ctx, file, artifact.BuildOptions{
		Store: store, Context: os.DirFS(dir), Ref: b.tag, Check: b.check, AllowBeta: b.allowBeta,
		Repos: repos, Remote: b.remote.options(g), Logger: log, Pull: b.pull,
		VendorImages: b.vendorImages,
	})
	for _, w := range warns {
		log.Warn(w)
	}
	if err != nil {
		return err
	}
	out := struct {
		Ref    string `json:"ref,omitempty"`
		Digest string `json:"digest"`
		Check  bool   `json:"check,omitempty"`
		Layers int    `json:"layers"`
		Images int    `json:"images"`
		// Vendored counts the images stored in the artifact.
		Vendored int `json:"vendored"`
	}{res.Ref, res.Digest, b.check, len(res.Config.Layers), len(res.Config.Images), vendoredCount(res.Config)}
	return output.Render(g.stdout, f, out, func(w io.Writer) error {
		if b.check {
			_, err := fmt.Fprintf(w, "%s: ok (%d layers, would be %s)\n", file, out.Layers, res.Digest)
			return err
		}
		_, err := fmt.Fprintf(w, "%s@%s\n", res.Ref, res.Digest)
		return err
	})
}

// vendoredCount counts the images stored in the artifact (--vendor-images).
func vendoredCount(c *artifact.Config) int {
	n := 0
	for _, im := range c.Images {
		if im.Vendored() {
			n++
		}
	}
	return n
}
