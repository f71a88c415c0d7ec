// Package plugins assembles Tessera's scheduler plugins into the options that
// extend a stock kube-scheduler command.
package plugins

import (
	"k8s.io/kubernetes/cmd/kube-scheduler/app"

	"tessera.dev/tessera/pkg/plugins/gang"
)

// SchedulerOptions returns one app.Option per Tessera plugin, registering it
// with the scheduler framework under its own name. Profiles enable them.
func SchedulerOptions() []app.Option {
	return []app.Option{
		app.WithPlugin(gang.Name, gang.New),
	}
}
