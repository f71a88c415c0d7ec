package framework

import (
	"context"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

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

// RecordAgentEvents returns a configure step for RunNodeAgent that has the
// agent record its events through the API as config's user, as in a
// cluster.
func RecordAgentEvents(t testing.TB, config *rest.Config, node string) func(*nodeagent.Config) {
	t.Helper()
	clientset, err := kubernetes.NewForConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: clientset.CoreV1().Events("")})
	t.Cleanup(broadcaster.Shutdown)
	return func(c *nodeagent.Config) {
		c.Recorder = broadcaster.NewRecorder(c.Client.Scheme(), corev1.EventSource{Component: "tessera-node-agent", Host: node})
	}
}

// NodeAgentConfig is the node agent's identity on node, as in a cluster:
// the chart's tessera-node-agent ServiceAccount, with a token bound to the
// node (the admission policy reads the node from it). The ServiceAccount
// must exist (the chart's node-agent RBAC).
func (e *Env) NodeAgentConfig(t testing.TB, node *corev1.Node) *rest.Config {
	t.Helper()
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: ptr.To[int64](3600),
		BoundObjectRef:    &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID},
	}}
	tok, err := e.Client.CoreV1().ServiceAccounts("tessera-system").CreateToken(t.Context(), "tessera-node-agent", req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting a node-bound token: %v", err)
	}
	cfg := rest.AnonymousClientConfig(e.Cluster.Config)
	cfg.BearerToken = tok.Status.Token
	return cfg
}
