package controlplane

import (
	"context"
	"path/filepath"

	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/component-base/configz"
	schedapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	schedoptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
)

// scheduler is the kube-scheduler component.
type scheduler struct{ s *Server }

func (*scheduler) Name() string                { return "kube-scheduler" }
func (*scheduler) Init(context.Context) error  { return nil }
func (*scheduler) Start(context.Context) error { return nil }
func (*scheduler) Stop(context.Context) error  { return nil }

// Run runs the scheduler, under leader election when the server has it
// (see controllerManager.Run).
func (c *scheduler) Run(ctx context.Context) error {
	return c.s.leaderElected(ctx, "kube-scheduler", func(ctx context.Context) error {
		defer configz.Delete("componentconfig") // registered again by the next run
		return runScheduler(ctx, c.s.schedulerArgs())
	})
}

func (s *Server) schedulerArgs() []string {
	return append(s.common(),
		"--kubeconfig="+filepath.Join(s.cfg.DataDir, schedulerKubeconfig),
		"--secure-port=0",
		"--leader-elect=false",
		"--profiling=false",
	)
}

func runScheduler(ctx context.Context, args []string) error {
	opts := schedoptions.NewOptions()
	if err := parseFlags("kube-scheduler", opts.Flags.FlagSets, opts.Flags.Order, args); err != nil {
		return err
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	fg := opts.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	if err := applyLogs(opts.Logs, fg); err != nil {
		return err
	}
	cc, sched, err := schedapp.Setup(ctx, opts)
	if err != nil {
		return err
	}
	return schedapp.Run(ctx, cc, sched)
}
