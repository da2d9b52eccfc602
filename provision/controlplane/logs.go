package controlplane

import (
	"context"
	"io"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"k8s.io/component-base/featuregate"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
)

// componentLogs is the component that sends klog and the Kubernetes
// components' structured logs to one file, <data-dir>/logs/control-plane.log
// (or Config.ComponentLog), from Init to Stop.
type componentLogs struct {
	s    *Server
	file *os.File // opened by Init; nil with Config.ComponentLog
}

func (*componentLogs) Name() string { return "component-logs" }

func (c *componentLogs) Init(context.Context) error {
	f, err := setupComponentLogging(c.s.cfg)
	c.file = f
	return err
}

func (*componentLogs) Start(context.Context) error { return nil }

func (c *componentLogs) Stop(context.Context) error {
	if c.file == nil {
		return nil
	}
	// Upstream goroutines that outlive their component may still log.
	klog.SetOutput(io.Discard)
	return c.file.Close()
}

// setupComponentLogging points klog at the component log and lets the three
// components apply the same logging configuration one after another.
// It returns the log file it opened (nil with Config.ComponentLog).
func setupComponentLogging(cfg Config) (*os.File, error) {
	logsapi.ReapplyHandling = logsapi.ReapplyHandlingIgnoreUnchanged
	w := cfg.ComponentLog
	var f *os.File
	if w == nil {
		dir := filepath.Join(cfg.DataDir, "logs")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		var err error
		f, err = os.OpenFile(filepath.Join(dir, "control-plane.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, err
		}
		w = f
	}
	componentLog = w
	logOpts = &logsapi.LoggingOptions{ErrorStream: w, InfoStream: w}
	redirectKlog()
	// The apiserver's loopback clients warn about their own deprecated calls.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	return f, nil
}

// componentLog receives klog output of all components; logOpts route the
// components' structured loggers there too. One value for all components, so
// re-applying the same logging configuration is accepted.
var (
	componentLog io.Writer
	logOpts      *logsapi.LoggingOptions
)

// redirectKlog sends klog to the component log; every component's logging
// set-up resets klog's output, so each calls this after applying its options.
func redirectKlog() {
	klog.LogToStderr(false)
	klog.SetOutput(componentLog)
}

// applyLogs applies a component's logging options, then redirects klog.
func applyLogs(c *logsapi.LoggingConfiguration, fg featuregate.FeatureGate) error {
	if err := logsapi.ValidateAndApplyWithOptions(c, logOpts, fg); err != nil {
		return err
	}
	redirectKlog()
	return nil
}
