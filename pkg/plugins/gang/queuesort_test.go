package gang

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/utils/ptr"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pglisters "sigs.k8s.io/scheduler-plugins/pkg/generated/listers/scheduling/v1alpha1"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func TestLessKeepsGangsTogetherByPriorityThenAge(t *testing.T) {
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for name, created := range map[string]time.Time{"old": t0, "new": t0.Add(time.Minute)} {
		_ = indexer.Add(&schedv1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, CreationTimestamp: metav1.NewTime(created)}})
	}
	g := &Gang{pgLister: pglisters.NewPodGroupLister(indexer)}

	queued := func(name, gang string, prio int32, queuedAt time.Duration) fwk.QueuedPodInfo {
		pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, CreationTimestamp: metav1.NewTime(t0)},
			Spec: v1.PodSpec{Priority: ptr.To(prio)}}
		if gang != "" {
			pod.Labels = map[string]string{schedv1alpha1.PodGroupLabel: gang}
		}
		pi, err := framework.NewPodInfo(pod)
		if err != nil {
			t.Fatal(err)
		}
		return &framework.QueuedPodInfo{PodInfo: pi, Timestamp: t0.Add(queuedAt)}
	}
	pods := []fwk.QueuedPodInfo{
		queued("new-0", "new", 0, 1*time.Second),
		queued("old-1", "old", 0, 5*time.Second),
		queued("lone-early", "", 0, -time.Second),
		queued("new-1", "new", 0, 2*time.Second),
		queued("old-0", "old", 0, 3*time.Second),
		queued("urgent", "", 100, 9*time.Second),
		queued("lone-late", "", 0, 30*time.Second),
	}
	slices.SortStableFunc(pods, func(a, b fwk.QueuedPodInfo) int {
		switch {
		case g.Less(a, b):
			return -1
		case g.Less(b, a):
			return 1
		}
		return 0
	})
	var got []string
	for _, p := range pods {
		got = append(got, p.GetPodInfo().GetPod().Name)
	}
	// Priority first; then the older group: a lone pod queued before gang
	// "old" was created goes first, gang "old" (created t0) stays together
	// before gang "new" (t0+1m), and a lone pod queued later follows.
	want := []string{"urgent", "lone-early", "old-0", "old-1", "lone-late", "new-0", "new-1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("queue order (-want +got):\n%s", diff)
	}
}
