package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"tessera.dev/tessera/internal/cluster"
	"tessera.dev/tessera/internal/gpunodes"
)

// Volcano's objects, written as unstructured ones so that Tessera's module
// does not depend on volcano.sh/apis (v1.15 is not served by the module
// proxy; hack/peers/volcano builds vc-scheduler against a patched v1.14).
const (
	volcanoSchedulingAPI = "scheduling.volcano.sh/v1beta1"
	volcanoTopologyAPI   = "topology.volcano.sh/v1alpha1"
	// volcanoGroupAnnotation names a pod's PodGroup (Volcano's
	// KubeGroupNameAnnotationKey).
	volcanoGroupAnnotation = "scheduling.k8s.io/group-name"
	volcanoQueue           = "default"
	// The client rate limits of Tessera's profile and of the coscheduling
	// peer's (clientConnection qps 200, burst 400), so that all bind as fast.
	volcanoQPS, volcanoBurst = 200, 400
)

// volcanoGroup is the PodGroup of a pod: its gang's, or for a pod outside
// any gang the one of its own that vc-controller-manager would make.
func volcanoGroup(pod, gang string) string {
	if gang != "" {
		return gang
	}
	return "pod-" + pod
}

// startVolcano installs Volcano's CRDs (copied next to the binary by
// hack/build-peers.sh), its root and default queues, Open, and one HyperNode
// per rack under one over all racks, then starts vc-scheduler on them alone:
// no vc-controller-manager or webhooks. It returns once vc-scheduler is
// healthy.
func (b *bench) startVolcano(ctx context.Context, name string, spec schedulerSpec) error {
	binary := filepath.Join(b.o.repo, spec.binary)
	if _, err := envtest.InstallCRDs(b.Config, envtest.CRDInstallOptions{
		Paths:              []string{binary + "-crds"},
		ErrorIfPathMissing: true,
	}); err != nil {
		return fmt.Errorf("installing Volcano's CRDs (make peers): %w", err)
	}
	for _, q := range []string{"root", volcanoQueue} {
		if err := b.openVolcanoQueue(ctx, q); err != nil {
			return err
		}
	}
	if err := b.volcanoHyperNodes(ctx); err != nil {
		return err
	}
	healthz, err := cluster.FreePort()
	if err != nil {
		return err
	}
	metrics, err := cluster.FreePort()
	if err != nil {
		return err
	}
	kubeconfig := b.KubeconfigPath
	if b.SchedulerKubeconfig != "" {
		kubeconfig = b.SchedulerKubeconfig
	}
	// Its log-level socket (a Unix one) into the work dir, not /tmp.
	if err := os.Setenv("DEBUG_SOCKET_DIR", filepath.Join(b.WorkDir, name+"-sockets")); err != nil {
		return err
	}
	args := append([]string{
		"--kubeconfig=" + kubeconfig,
		"--scheduler-name=" + spec.schedulerName,
		"--scheduler-conf=" + filepath.Join(b.o.repo, spec.config),
		"--default-queue=" + volcanoQueue,
		"--leader-elect=false",
		"--enable-healthz=true",
		fmt.Sprintf("--healthz-address=127.0.0.1:%d", healthz),
		"--enable-metrics=true",
		fmt.Sprintf("--listen-address=127.0.0.1:%d", metrics),
		"--kube-api-qps=" + strconv.Itoa(volcanoQPS),
		"--kube-api-burst=" + strconv.Itoa(volcanoBurst),
		"--logtostderr",
	}, spec.args...)
	if err := b.StartProcess(ctx, name, binary, args...); err != nil {
		return err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", healthz)
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := b.Healthy(); err != nil {
			return false, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, nil
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

func volcanoObject(apiVersion, kind, name, ns string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetName(name)
	u.SetNamespace(ns)
	return u
}

// openVolcanoQueue creates a queue as vc-scheduler would at start (weight
// 1) and opens it, as vc-controller-manager's queue controller would.
// Volcano's plugins neither enqueue nor allocate for a queue not Open.
func (b *bench) openVolcanoQueue(ctx context.Context, name string) error {
	q := volcanoObject(volcanoSchedulingAPI, "Queue", name, "", map[string]any{"weight": int64(1), "reclaimable": name != "root"})
	if err := b.CR.Create(ctx, q); err != nil {
		return fmt.Errorf("creating Volcano queue %s: %w", name, err)
	}
	q.Object["status"] = map[string]any{"state": "Open"}
	if err := b.CR.Status().Update(ctx, q); err != nil {
		return fmt.Errorf("opening Volcano queue %s: %w", name, err)
	}
	return nil
}

// volcanoHyperNodes mirrors the racks of the nodes (their tessera.dev/rack
// label, from benchkit's CreateDGXNodes) as HyperNodes: one of tier 1 per
// rack listing its nodes by name, and one of tier 2 over all the racks.
func (b *bench) volcanoHyperNodes(ctx context.Context) error {
	nodes, err := b.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	racks := map[string][]string{}
	for _, n := range nodes.Items {
		if rack := n.Labels[gpunodes.LabelRack]; rack != "" {
			racks[rack] = append(racks[rack], n.Name)
		}
	}
	member := func(kind, name string) any {
		return map[string]any{"type": kind, "selector": map[string]any{"exactMatch": map[string]any{"name": name}}}
	}
	var spine []any
	for _, rack := range slices.Sorted(maps.Keys(racks)) {
		var members []any
		for _, n := range slices.Sorted(slices.Values(racks[rack])) {
			members = append(members, member("Node", n))
		}
		if err := b.CR.Create(ctx, volcanoObject(volcanoTopologyAPI, "HyperNode", rack, "", map[string]any{"tier": int64(1), "members": members})); err != nil {
			return fmt.Errorf("creating HyperNode %s: %w", rack, err)
		}
		spine = append(spine, member("HyperNode", rack))
	}
	if len(spine) == 0 {
		return fmt.Errorf("no node has a %s label to build HyperNodes from", gpunodes.LabelRack)
	}
	if err := b.CR.Create(ctx, volcanoObject(volcanoTopologyAPI, "HyperNode", "spine", "", map[string]any{"tier": int64(2), "members": spine})); err != nil {
		return fmt.Errorf("creating HyperNode spine: %w", err)
	}
	return nil
}

// volcanoPodGroup creates g as a Volcano PodGroup in the default queue,
// with g's PriorityClass as its spec.priorityClassName: Volcano's priority
// plugin orders and preempts jobs by it, not by their pods' priority.
func (b *bench) volcanoPodGroup(ctx context.Context, ns string, g gangDef) error {
	spec := map[string]any{
		"minMember": int64(g.minMember),
		"queue":     volcanoQueue,
	}
	if g.priorityClass != "" {
		spec["priorityClassName"] = g.priorityClass
	}
	return b.CR.Create(ctx, volcanoObject(volcanoSchedulingAPI, "PodGroup", g.name, ns, spec))
}

func (b *bench) deleteVolcanoPodGroups(ctx context.Context, ns string) error {
	pg := &unstructured.Unstructured{}
	pg.SetAPIVersion(volcanoSchedulingAPI)
	pg.SetKind("PodGroup")
	return b.CR.DeleteAllOf(ctx, pg, ctrlclient.InNamespace(ns))
}
