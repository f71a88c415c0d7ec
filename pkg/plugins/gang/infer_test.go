package gang

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/utils/ptr"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pgfake "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned/fake"

	"tessera.dev/tessera/pkg/ganginfer"
)

func testJob(name string, parallelism, completions int32, indexed bool, annotations map[string]string) *batchv1.Job {
	j := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("job-" + name), Annotations: annotations},
		Spec:       batchv1.JobSpec{Parallelism: ptr.To(parallelism), Completions: ptr.To(completions)},
	}
	if indexed {
		j.Spec.CompletionMode = ptr.To(batchv1.IndexedCompletion)
	}
	return j
}

// preFilterGang runs the Gang plugin's PreFilter alone.
func (h *harness) preFilterGang(p *v1.Pod) *fwk.Status {
	h.t.Helper()
	status, _ := h.preFilterGangIn(p)
	return status
}

// preFilterGangIn is preFilterGang that also returns the cycle's state,
// for the cycle's PostFilter.
func (h *harness) preFilterGangIn(p *v1.Pod) (*fwk.Status, fwk.CycleState) {
	h.t.Helper()
	state := framework.NewCycleState()
	_, status := h.gang.PreFilter(h.ctx, state, p, nil)
	return status, state
}

// jobPod makes a pod controlled by job, in the fake API too (the plugin
// patches it there).
func (h *harness) jobPod(name string, job *batchv1.Job) *v1.Pod {
	h.t.Helper()
	p := h.pod(name, "", 8, 0)
	p.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))}
	if _, err := h.client.CoreV1().Pods(p.Namespace).Create(h.ctx, p, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
	return p
}

func (h *harness) podLabel(name string) string {
	h.t.Helper()
	var label string
	_ = wait.PollUntilContextTimeout(h.ctx, 5*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := h.client.CoreV1().Pods("ns").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		label = p.Labels[schedv1alpha1.PodGroupLabel]
		return label != "", nil
	})
	return label
}

// A pod of an Indexed Job is refused at PreFilter until it joins its Job's
// gang: the plugin creates the PodGroup, owned by the Job (garbage
// collection removes it with the Job), and labels the pod into it. It
// preempts no one meanwhile.
func TestPreFilterJoinsAPodToItsJobsGang(t *testing.T) {
	h := newHarness(t)
	job := testJob("train", 3, 3, true, nil)
	if err := h.jobs.Add(job); err != nil {
		t.Fatal(err)
	}
	pod := h.jobPod("train-0", job)
	if status := h.gang.PreEnqueue(h.ctx, pod); !status.IsSuccess() {
		t.Errorf("PreEnqueue = %v, want nothing decided (or written) before the leader's cycle", status)
	}
	status, state := h.preFilterGangIn(pod)
	if status.IsSuccess() || !strings.Contains(status.Message(), "joining gang ns/train") {
		t.Fatalf("PreFilter = %v, want the pod refused while it joins its Job's gang", status)
	}
	if _, status := h.gang.PostFilter(h.ctx, state, pod, nil); status.IsSuccess() || !strings.Contains(status.Message(), "joining its owners' gang") {
		t.Errorf("PostFilter = %v, want no preemption for it alone", status)
	}
	if got := h.podLabel("train-0"); got != "train" {
		t.Fatalf("pod labelled %q, want train", got)
	}
	pg, err := h.gang.shared.pgClient.SchedulingV1alpha1().PodGroups("ns").Get(h.ctx, "train", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pg.Spec.MinMember != 3 {
		t.Errorf("minMember %d, want 3 (the Job's parallelism)", pg.Spec.MinMember)
	}
	if owner := metav1.GetControllerOf(pg); owner == nil || owner.UID != job.UID || owner.Kind != "Job" || ptr.Deref(owner.BlockOwnerDeletion, true) {
		t.Errorf("PodGroup controlled by %+v, want the Job, not blocking its deletion", owner)
	}
}

// A PodGroup an earlier Job of the same name left (deleted with orphan
// propagation) is taken over, and minMember follows what the Job still
// runs.
func TestInferenceTakesOverItsOwnLeftovers(t *testing.T) {
	h := newHarness(t)
	left := &schedv1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "train", Labels: map[string]string{ganginfer.InferredLabel: "Job"}},
		Spec: schedv1alpha1.PodGroupSpec{MinMember: 8}}
	if err := h.pgs.Add(left); err != nil {
		t.Fatal(err)
	}
	if _, err := h.gang.shared.pgClient.SchedulingV1alpha1().PodGroups("ns").Create(h.ctx, left, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	job := testJob("train", 4, 4, true, nil)
	job.Status.Succeeded = 1
	if err := h.jobs.Add(job); err != nil {
		t.Fatal(err)
	}
	h.preFilterGang(h.jobPod("train-3", job))
	if got := h.podLabel("train-3"); got != "train" {
		t.Fatalf("pod labelled %q, want train", got)
	}
	pg, err := h.gang.shared.pgClient.SchedulingV1alpha1().PodGroups("ns").Get(h.ctx, "train", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if owner := metav1.GetControllerOf(pg); pg.Spec.MinMember != 3 || owner == nil || owner.UID != job.UID {
		t.Errorf("PodGroup minMember %d, controller %+v; want 3 (one index done), the new Job", pg.Spec.MinMember, owner)
	}
}

func TestPreFilterLeavesOtherPodsAlone(t *testing.T) {
	h := newHarness(t)
	plain := testJob("batch", 4, 4, false, nil)
	if err := h.jobs.Add(plain); err != nil {
		t.Fatal(err)
	}
	if status := h.preFilterGang(h.jobPod("batch-0", plain)); !status.IsSkip() {
		t.Errorf("PreFilter of a non-indexed Job's pod = %v, want it scheduled alone", status)
	}
	if status := h.preFilterGang(h.pod("lone", "", 1, 0)); !status.IsSkip() {
		t.Errorf("PreFilter of a pod without a Job = %v", status)
	}
	unseen := testJob("unseen", 2, 2, true, nil)
	if status := h.preFilterGang(h.jobPod("unseen-0", unseen)); status.IsSuccess() || !strings.Contains(status.Message(), "reading Job ns/unseen") {
		t.Errorf("PreFilter of a pod whose Job is not cached = %v, want it refused while the Job is read", status)
	}
	bad := testJob("bad", 2, 2, true, map[string]string{ganginfer.GangMinMemberAnnotation: "3"})
	if err := h.jobs.Add(bad); err != nil {
		t.Fatal(err)
	}
	if status := h.preFilterGang(h.jobPod("bad-0", bad)); status.IsSuccess() || !strings.Contains(status.Message(), ganginfer.GangMinMemberAnnotation) {
		t.Errorf("PreFilter of a pod whose Job has a bad annotation = %v, want the annotation named", status)
	}
}

// A PodGroup of the Job's name that the Job does not own is not taken
// over: the pod stays out of it, with an event saying why.
func TestInferenceTakesOverNoPodGroup(t *testing.T) {
	h := newHarness(t)
	h.podGroup("train", 5)
	job := testJob("train", 2, 2, true, nil)
	if err := h.jobs.Add(job); err != nil {
		t.Fatal(err)
	}
	pod := h.jobPod("train-0", job)
	h.preFilterGang(pod)
	recorder := h.gang.shared.recorder.(*record.FakeRecorder)
	select {
	case e := <-recorder.Events:
		if !strings.Contains(e, "is not Job train's") {
			t.Errorf("event %q, want the conflict named", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event for the PodGroup conflict")
	}
	p, err := h.client.CoreV1().Pods("ns").Get(h.ctx, "train-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if label := p.Labels[schedv1alpha1.PodGroupLabel]; label != "" {
		t.Errorf("pod labelled into %q, a PodGroup its Job does not own", label)
	}
}

// Pods of one gang that arrive while the goroutine joining it is busy are
// joined by it too: none is left unlabelled (and unscheduled) because
// another member was being joined when it came.
func TestInferenceJoinsMembersArrivingWhileItWorks(t *testing.T) {
	h := newHarness(t)
	job := testJob("train", 2, 2, true, nil)
	if err := h.jobs.Add(job); err != nil {
		t.Fatal(err)
	}
	first, second := h.jobPod("train-0", job), h.jobPod("train-1", job)
	release := make(chan struct{})
	patching := make(chan struct{}, 2)
	h.client.PrependReactor("patch", "pods", func(clienttesting.Action) (bool, runtime.Object, error) {
		patching <- struct{}{}
		<-release
		return false, nil, nil
	})
	h.preFilterGang(first)
	<-patching // the goroutine is busy with the first pod
	if status := h.preFilterGang(second); status.IsSuccess() {
		t.Fatalf("PreFilter of the second member = %v, want it refused while it joins", status)
	}
	close(release)
	for _, name := range []string{"train-0", "train-1"} {
		if got := h.podLabel(name); got != "train" {
			t.Errorf("pod %s labelled %q, want train", name, got)
		}
	}
}

// A PodGroup changed since the informer saw it (a conflict on update) is
// read again and brought up to date, not left for the pod to wait on.
func TestInferenceRetriesAConflictedUpdate(t *testing.T) {
	h := newHarness(t)
	left := &schedv1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "train", Labels: map[string]string{ganginfer.InferredLabel: "Job"}},
		Spec: schedv1alpha1.PodGroupSpec{MinMember: 8}}
	if err := h.pgs.Add(left); err != nil {
		t.Fatal(err)
	}
	pgClient := h.gang.shared.pgClient.(*pgfake.Clientset)
	if _, err := pgClient.SchedulingV1alpha1().PodGroups("ns").Create(h.ctx, left, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	conflicted := false
	pgClient.PrependReactor("update", "podgroups", func(clienttesting.Action) (bool, runtime.Object, error) {
		if conflicted {
			return false, nil, nil
		}
		conflicted = true
		return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "podgroups"}, "train", errors.New("changed"))
	})
	job := testJob("train", 4, 4, true, nil)
	if err := h.jobs.Add(job); err != nil {
		t.Fatal(err)
	}
	h.preFilterGang(h.jobPod("train-0", job))
	if got := h.podLabel("train-0"); got != "train" {
		t.Fatalf("pod labelled %q, want train", got)
	}
	pg, err := pgClient.SchedulingV1alpha1().PodGroups("ns").Get(h.ctx, "train", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !conflicted || pg.Spec.MinMember != 4 {
		t.Errorf("conflicted %v, minMember %d; want the update retried to 4", conflicted, pg.Spec.MinMember)
	}
}
