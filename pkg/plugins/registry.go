// Package plugins assembles Tessera's scheduler plugins into the options that
// extend a stock kube-scheduler command.
package plugins

import (
	"k8s.io/kubernetes/cmd/kube-scheduler/app"

	"tessera.dev/tessera/pkg/plugins/gang"
	"tessera.dev/tessera/pkg/plugins/nvlink"
)

// SchedulerOptions returns one app.Option per Tessera plugin, registering it
// with the scheduler framework under its own name. Profiles enable them.
// Where a profile enables both, NVLinkTopology orders the nodes of Gang's
// whole-gang plans.
func SchedulerOptions() []app.Option {
	orderers := gang.NewOrderers()
	return []app.Option{
		app.WithPlugin(gang.Name, gang.Factory(orderers)),
		app.WithPlugin(nvlink.Name, nvlink.Factory(orderers)),
	}
}
