package nodeagent_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"tessera.dev/tessera/internal/cluster"
	"tessera.dev/tessera/pkg/nodeagent"
	"tessera.dev/tessera/test/integration/framework"
)

// TestAgentCachesOnlyItsNodesPods checks that the agent's client watches the
// pods bound to its own node and no others, so that its memory does not grow
// with the cluster's pod count.
func TestAgentCachesOnlyItsNodesPods(t *testing.T) {
	manifests := filepath.Join(env.RepoRoot, "manifests", "node-agent")
	if err := cluster.CreateFromFiles(t.Context(), env.CR, filepath.Join(manifests, "rbac.yaml")); err != nil {
		t.Fatal(err)
	}
	node := env.GPUNode(t, "scope-a", "l4-pcie", "rack-a")
	ns := env.Namespace(t)
	for name, nodeName := range map[string]string{"mine": "scope-a", "elsewhere": "scope-other", "unbound": ""} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "c", Image: "img"}}},
		}
		if err := env.CR.Create(t.Context(), pod); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	client, err := nodeagent.NewClient(ctx, env.NodeAgentConfig(t, node), node.Name)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{}
	if err := client.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "mine"}, pod); err != nil {
		t.Fatalf("reading the pod bound to the agent's node: %v", err)
	}
	for _, name := range []string{"elsewhere", "unbound"} {
		err := client.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: name}, &corev1.Pod{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("reading pod %s, not bound to the agent's node: err = %v, want not found (the agent caches only its node's pods)", name, err)
		}
	}
	var list corev1.PodList
	if err := client.List(t.Context(), &list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range list.Items {
		names = append(names, p.Namespace+"/"+p.Name)
	}
	if diff := cmp.Diff([]string{ns + "/mine"}, names); diff != "" {
		t.Errorf("pods in the agent's cache (-want +got):\n%s", diff)
	}
	if len(pod.ManagedFields) != 0 {
		t.Errorf("cached pod keeps %d managed fields entries, want none", len(pod.ManagedFields))
	}
	framework.Eventually(t, framework.DefaultTimeout, "a pod created later on the agent's node to reach its cache", func(ctx context.Context) (bool, error) {
		late := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "late"},
			Spec:       corev1.PodSpec{NodeName: "scope-a", Containers: []corev1.Container{{Name: "c", Image: "img"}}},
		}
		if err := env.CR.Create(ctx, late); err != nil && !apierrors.IsAlreadyExists(err) {
			return false, err
		}
		return client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "late"}, &corev1.Pod{}) == nil, nil
	})
}
