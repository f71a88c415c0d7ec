// Package plugins assembles Tessera's scheduler plugins into the options that
// extend a stock kube-scheduler command.
package plugins

import (
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"

	"tessera.dev/tessera/pkg/plugins/claimorder"
	"tessera.dev/tessera/pkg/plugins/fragmentation"
	"tessera.dev/tessera/pkg/plugins/gang"
	"tessera.dev/tessera/pkg/plugins/nvlink"
)

// SchedulerOptions returns one app.Option per Tessera plugin, registering it
// with the scheduler framework under its own name. Profiles enable them.
// Where a profile enables them together, NVLinkTopology orders the nodes of
// Gang's whole-gang plans and accounts GPU use for GPUFragmentation, which
// in turn chooses the GPU for each share; TesseraDynamicResources, in
// DynamicResources' place, makes DRA claims take NVLinkTopology's GPUs.
func SchedulerOptions() []app.Option {
	// One GPU ledger and one gang plan store for every profile.
	ledger := nvlink.NewLedger()
	gangs := gang.NewShared()
	orderers := gang.NewOrderers()
	accountants := fragmentation.NewAccountants()
	pickers := nvlink.NewSharePickers()
	choosers := claimorder.NewChoosers()
	inFlight := claimorder.NewInFlightClaims()
	offerNVLink := func(handle fwk.Handle, pl *nvlink.NVLinkTopology) {
		orderers.Set(handle, pl)
		accountants.Set(handle, pl)
		choosers.Set(handle, pl)
	}
	offerFragmentation := func(handle fwk.Handle, pl *fragmentation.GPUFragmentation) { pickers.Set(handle, pl) }
	return []app.Option{
		app.WithPlugin(gang.Name, gang.Factory(gangs, orderers)),
		app.WithPlugin(nvlink.Name, nvlink.Factory(ledger, offerNVLink, pickers)),
		app.WithPlugin(fragmentation.Name, fragmentation.Factory(accountants, offerFragmentation)),
		app.WithPlugin(claimorder.Name, claimorder.Factory(choosers, inFlight)),
	}
}
