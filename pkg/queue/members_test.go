package queue

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"
	kueueconstants "sigs.k8s.io/kueue/pkg/constants"
)

func boundPod(name, node string, labels map[string]string, owner *metav1.OwnerReference) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: labels}, Spec: corev1.PodSpec{NodeName: node}}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	return p
}

func controller(apiVersion, kind, name string, uid types.UID) *metav1.OwnerReference {
	return &metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: new(true)}
}

// A Workload's placed pods are counted however Kueue or the launcher made
// them: the launcher's label, a Kueue pod group (an LWS group), or the
// Workload's owner controlling them through a Job (a JobSet). Pods of
// other Workloads, unbound pods, and pods under controllers the walk does
// not read are not.
func TestBoundPodsFindsEveryKindOfMember(t *testing.T) {
	jobSet := controller("jobset.x-k8s.io/v1alpha2", "JobSet", "ft", "js-uid")
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ft-workers-0", UID: "job-uid",
		OwnerReferences: []metav1.OwnerReference{*jobSet}}}
	otherJob := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "other", UID: "other-uid"}}
	byJob := controller("batch/v1", "Job", job.Name, job.UID)
	objs := []runtime.Object{job, otherJob,
		boundPod("js-0", "n0", map[string]string{kueueconstants.PodSetLabel: "workers"}, byJob),
		boundPod("js-1", "n1", map[string]string{kueueconstants.PodSetLabel: "workers"}, byJob),
		boundPod("js-pending", "", map[string]string{kueueconstants.PodSetLabel: "workers"}, byJob),
		boundPod("other", "n2", nil, controller("batch/v1", "Job", otherJob.Name, otherJob.UID)),
		// A Job of the name but another UID is not the pod's.
		boundPod("stale", "n2", nil, controller("batch/v1", "Job", job.Name, "old-uid")),
		boundPod("lws-0", "n3", map[string]string{"kueue.x-k8s.io/pod-group-name": "lws-group-1"}, controller("apps/v1", "StatefulSet", "serve", "sts")),
		boundPod("launcher-0", "n4", map[string]string{LabelWorkload: "tj", LabelPodSet: "worker"}, nil),
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	r := &TopologyFit{Client: fake.NewClientBuilder().WithScheme(scheme).WithRuntimeObjects(objs...).Build()}
	workload := func(name string, owner *metav1.OwnerReference, podSets ...string) *kueue.Workload {
		wl := &kueue.Workload{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
		if owner != nil {
			wl.OwnerReferences = []metav1.OwnerReference{*owner}
		}
		for _, ps := range podSets {
			wl.Spec.PodSets = append(wl.Spec.PodSets, kueue.PodSet{Name: kueue.PodSetReference(ps)})
		}
		return wl
	}
	for _, tc := range []struct {
		name string
		wl   *kueue.Workload
		want map[string]int
	}{
		{"JobSet, through its Jobs", workload("jobset-ft", jobSet, "workers"), map[string]int{"workers": 2}},
		{"LWS group, by pod group", workload("lws-group-1", controller("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "serve", "lws"), "main"), map[string]int{"main": 1}},
		{"launcher's", workload("tj", nil, "worker"), map[string]int{"worker": 1}},
		{"none placed", workload("fresh", controller("jobset.x-k8s.io/v1alpha2", "JobSet", "fresh", "fresh-uid"), "workers"), map[string]int{}},
	} {
		got, err := r.boundPods(t.Context(), tc.wl)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: bound pods (-want +got):\n%s", tc.name, diff)
		}
	}
}
