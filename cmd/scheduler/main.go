// Command scheduler is kube-scheduler with Tessera's plugins registered.
// Pods opt in with schedulerName: tessera-scheduler; see
// manifests/scheduler/config.yaml for the default profile.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"

	"tessera.dev/tessera/pkg/plugins"
)

func main() {
	command := app.NewSchedulerCommand(plugins.SchedulerOptions()...)
	os.Exit(cli.Run(command))
}
