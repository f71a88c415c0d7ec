package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/component-base/configz"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	sigsyaml "sigs.k8s.io/yaml"
)

// LocalSchedulerConfig rewrites a KubeSchedulerConfiguration for this local
// cluster: it talks to the local apiserver through kubeconfig (the admin's,
// or SchedulerKubeconfig) and runs without leader election. The rewritten file, named after name, is written
// into the work dir. It edits the document as plain YAML, so that a config
// meant for another scheduler release keeps exactly its own fields.
func (c *Cluster) LocalSchedulerConfig(configPath, name string) (string, error) {
	raw, err := os.ReadFile(configPath)
	if err != nil {
		return "", fmt.Errorf("reading scheduler config: %w", err)
	}
	var cfg map[string]any
	if err := sigsyaml.Unmarshal(raw, &cfg); err != nil {
		return "", fmt.Errorf("parsing scheduler config %s: %w", configPath, err)
	}
	if kind, _ := cfg["kind"].(string); kind != "KubeSchedulerConfiguration" {
		return "", fmt.Errorf("%s is not a KubeSchedulerConfiguration (kind %q)", configPath, kind)
	}
	kubeconfig := c.KubeconfigPath
	if c.SchedulerKubeconfig != "" {
		kubeconfig = c.SchedulerKubeconfig
	}
	cfg["clientConnection"] = merge(cfg["clientConnection"], map[string]any{"kubeconfig": kubeconfig})
	cfg["leaderElection"] = merge(cfg["leaderElection"], map[string]any{"leaderElect": false})
	out, err := sigsyaml.Marshal(cfg)
	if err != nil {
		return "", err
	}
	localPath := filepath.Join(c.WorkDir, name+"-config.yaml")
	return localPath, os.WriteFile(localPath, out, 0o644)
}

func merge(section any, values map[string]any) map[string]any {
	m, ok := section.(map[string]any)
	if !ok {
		m = map[string]any{}
	}
	for k, v := range values {
		m[k] = v
	}
	return m
}

// StartScheduler runs the scheduler in this process with the given registry
// options (Tessera's plugins), as cmd/scheduler would. It returns once the
// scheduler is set up; the returned function stops it and waits.
func (c *Cluster) StartScheduler(ctx context.Context, configPath string, registry ...app.Option) (stop func(), err error) {
	localConfig, err := c.LocalSchedulerConfig(configPath, "in-process-scheduler")
	if err != nil {
		return nil, err
	}
	opts := options.NewOptions()
	opts.ConfigFile = localConfig
	// No serving endpoint: tests talk to the apiserver, not the scheduler.
	opts.SecureServing.BindPort = 0
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	cc, sched, err := app.Setup(ctx, opts, registry...)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("setting up scheduler: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := app.Run(ctx, cc, sched); err != nil && ctx.Err() == nil {
			klog.FromContext(ctx).Error(err, "In-process scheduler stopped")
		}
	}()
	return func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
		// Run registers its config under a process-wide name; free it for
		// the next scheduler started in this process.
		configz.Delete("componentconfig")
	}, nil
}

// StartSchedulerProcess runs a kube-scheduler binary (cmd/scheduler, or a
// peer's) under name, with configPath made local.
func (c *Cluster) StartSchedulerProcess(ctx context.Context, name, binary, configPath string, extraArgs ...string) error {
	localConfig, err := c.LocalSchedulerConfig(configPath, name)
	if err != nil {
		return err
	}
	args := append([]string{"--config=" + localConfig, "--bind-address=127.0.0.1", "--secure-port=0"}, extraArgs...)
	return c.StartProcess(ctx, name, binary, args...)
}

// PID is the process ID of the process started under name; false if none
// runs.
func (c *Cluster) PID(name string) (int, bool) {
	for _, p := range c.procs {
		if p.name == name {
			return p.cmd.Process.Pid, true
		}
	}
	return 0, false
}

// StopProcess stops the process started under name, if it runs.
func (c *Cluster) StopProcess(name string) error {
	for i, p := range c.procs {
		if p.name == name {
			c.procs = append(c.procs[:i], c.procs[i+1:]...)
			return p.stop(10 * time.Second)
		}
	}
	return nil
}

// KillProcess kills the process started under name at once (SIGKILL), as a
// crash or an OOM kill would, and waits for it to exit.
func (c *Cluster) KillProcess(name string) error {
	for i, p := range c.procs {
		if p.name == name {
			c.procs = append(c.procs[:i], c.procs[i+1:]...)
			return p.stop(0)
		}
	}
	return fmt.Errorf("no process %s is running", name)
}

// StartProcess runs binary as part of the cluster: its output goes to
// name.log in the work dir, and Stop stops it.
func (c *Cluster) StartProcess(ctx context.Context, name, binary string, args ...string) error {
	p, err := startProcess(ctx, name, c.WorkDir, binary, args...)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)
	return nil
}
