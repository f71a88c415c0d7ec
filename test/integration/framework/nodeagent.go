package framework

import (
	"context"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"tessera.dev/tessera/pkg/nodeagent"
	"tessera.dev/tessera/pkg/topology/nvmlfake"
	"tessera.dev/tessera/pkg/topology/nvmlsource"
)

// RunNodeAgent runs a node agent for node, as config's user, over fake NVML
// of the given shape, syncing every 100 ms, until the test ends. configure
// fills in the rest of the agent's config (recorder, registry, PodResources,
// heartbeat). It returns the fake NVML server, for fault injection.
func RunNodeAgent(t testing.TB, config *rest.Config, node, shape string, configure func(*nodeagent.Config)) *nvmlfake.Server {
	t.Helper()
	gpus, _ := StartNodeAgent(t, config, node, shape, configure)
	return gpus
}

// StartNodeAgent is RunNodeAgent that also returns a stop function, which
// returns once the agent has stopped (a restart is stop, then start again).
func StartNodeAgent(t testing.TB, config *rest.Config, node, shape string, configure func(*nodeagent.Config)) (*nvmlfake.Server, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	client, err := nodeagent.NewClient(ctx, config, node)
	if err != nil {
		t.Fatal(err)
	}
	gpus, err := nvmlfake.New(shape, node)
	if err != nil {
		t.Fatal(err)
	}
	src, err := nvmlsource.New(gpus)
	if err != nil {
		t.Fatal(err)
	}
	cfg := nodeagent.Config{NodeName: node, Source: src, Client: client, Interval: 100 * time.Millisecond}
	configure(&cfg)
	agent, err := nodeagent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	stop := sync.OnceFunc(func() {
		cancel()
		<-done
		_ = src.Close()
	})
	t.Cleanup(stop)
	go func() {
		defer close(done)
		_ = agent.Run(ctx)
	}()
	return gpus, stop
}
