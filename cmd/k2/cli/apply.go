package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/apply"
)

// applyFlags are k2 apply's flags.
type applyFlags struct {
	kube      kubeFlags
	files     []string
	opts      apply.Options
	namespace string
}

func newApplyCmd(g *globals) *cobra.Command {
	var o applyFlags
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|- [-f …]",
		Short: "Apply manifests to a cluster: versionless, stable APIs only, server-side",
		Long: `Apply sends manifests to a cluster with server-side apply (field manager k2),
the way k2 deploy applies an artifact's layers.

Versionless: an object may omit apiVersion; k2 resolves its kind through the
server's discovery to the preferred stable version (Deployment → apps/v1).
apiVersion may also name only a group (apiVersion: events.k8s.io) when a
kind exists in several groups.

Stable only: alpha and beta APIs are refused, explicit or resolved, unless
--allow-beta. Every object is checked before anything is sent; a refusal
lists each offending object with file and line, and exits with code 3.

CustomResourceDefinitions are applied first (and waited for), Namespaces
next, then everything else. --wait waits until Deployments are available,
StatefulSets and DaemonSets ready, Jobs complete and Apps Ready, and explains
what is not ready, with recent events.

--inventory NAME labels every object k2.dev/inventory=NAME; with --prune,
objects carrying that label that the files no longer hold are deleted.`,
		Example: `  k2 apply -f app.yaml --kubeconfig /tmp/k2/admin.kubeconfig
  k2 apply -f manifests/ --wait --timeout 2m
  cat web.yaml | k2 apply -f - -o json
  k2 apply -f site/ --inventory site --prune`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error { return runApply(cmd.Context(), g, &o) },
	}
	fl := cmd.Flags()
	fl.StringArrayVarP(&o.files, "filename", "f", nil, "manifest file, directory (recursive) or - for stdin; repeatable")
	fl.BoolVar(&o.opts.AllowBeta, "allow-beta", false, "accept alpha and beta APIs")
	fl.StringVarP(&o.namespace, "namespace", "n", "", "namespace for namespaced objects that name none (default \"default\")")
	fl.BoolVar(&o.opts.Wait, "wait", false, "wait until every object is ready")
	fl.DurationVar(&o.opts.Timeout, "timeout", 5*time.Minute, "how long --wait waits")
	fl.StringVar(&o.opts.Inventory, "inventory", "", "label the objects k2.dev/inventory=NAME")
	fl.BoolVar(&o.opts.Prune, "prune", false, "delete objects labelled with --inventory that the manifests no longer hold")
	fl.StringVar(&o.opts.FieldManager, "field-manager", apply.DefaultFieldManager, "server-side apply field manager")
	o.kube.register(cmd)
	return cmd
}

// runApply reads the manifests, applies them and renders the result.
func runApply(ctx context.Context, g *globals, o *applyFlags) error {
	f, err := g.format()
	if err != nil {
		return err
	}
	if len(o.files) == 0 {
		return usererr.Usage("no manifests given; pass -f FILE, -f DIR or -f -")
	}
	if o.opts.Prune && o.opts.Inventory == "" {
		return usererr.Usage("--prune needs --inventory NAME (the label that marks what this set owns)")
	}
	objs, err := apply.ReadPaths(o.files, g.stdin)
	if err != nil {
		return usererr.Wrap(usererr.KindInvalid, err, "fix the manifests and run again")
	}
	if len(objs) == 0 {
		return usererr.New(usererr.KindInvalid, "no objects in %s", strings.Join(o.files, ", "))
	}
	cfg, err := o.kube.restConfig()
	if err != nil {
		return err
	}
	o.opts.Namespace = o.namespace
	o.opts.Logger = g.logger()
	res, err := apply.Apply(ctx, cfg, objs, o.opts)
	if res != nil && len(res.Objects) > 0 {
		if rerr := output.Render(g.stdout, f, res, func(w io.Writer) error { return printApply(w, res) }); rerr != nil {
			return rerr
		}
	}
	var refused *apply.RefusedError
	switch {
	case errors.As(err, &refused):
		if f == output.JSON {
			_ = output.Render(g.stdout, f, map[string]any{"refused": refused.Problems}, nil)
		}
		return usererr.Wrap(usererr.KindInvalid, err, "")
	case errors.Is(err, apply.ErrNotReady):
		return usererr.Wrap(usererr.KindFailure, err, "see kubectl describe for details")
	}
	return err
}

func printApply(w io.Writer, res *apply.Result) error {
	t := output.Table(w)
	fmt.Fprintln(t, "OBJECT\tAPIVERSION\tACTION\tREADY")
	for _, r := range res.Objects {
		obj := strings.ToLower(r.Object.Kind) + "/" + r.Object.Name
		if r.Object.Namespace != "" {
			obj = r.Object.Namespace + "/" + obj
		}
		av := r.Object.APIVersion
		if r.Versionless {
			av += " (resolved)"
		}
		ready := "-"
		if r.Ready != nil {
			ready = "yes"
			if !*r.Ready {
				ready = "no: " + r.Status
			}
		}
		action := r.Action
		if r.Error != "" {
			action += ": " + r.Error
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\n", obj, av, action, ready)
	}
	for _, p := range res.Pruned {
		fmt.Fprintf(t, "%s\t%s\tpruned\t-\n", p.String(), p.APIVersion)
	}
	return t.Flush()
}
