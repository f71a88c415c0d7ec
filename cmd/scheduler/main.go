// Command scheduler is kube-scheduler with Tessera's plugins registered.
// Pods opt in with schedulerName: tessera-scheduler; see
// manifests/scheduler/config.yaml for the default profile.
package main

import (
	"fmt"
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"tessera.dev/tessera/internal/version"
	"tessera.dev/tessera/pkg/plugins"
)

func main() {
	// Tessera's version first, then kube-scheduler's own --version (the
	// Kubernetes release the scheduler framework comes from).
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Println("tessera-scheduler", version.String())
	}
	// The GPUNodeTopology watch runs on controller-runtime's cache, which
	// logs through its own logger: route it to klog, as everything else, or
	// it prints a stack trace at its first line.
	ctrllog.SetLogger(klog.NewKlogr())
	command := app.NewSchedulerCommand(plugins.SchedulerOptions()...)
	os.Exit(cli.Run(command))
}
