package launcher

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
)

func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, tesserav1alpha1.AddToScheme, schedv1alpha1.AddToScheme, kueue.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return scheme
}

func fakeClient(t *testing.T, objs ...ctrlclient.Object) ctrlclient.Client {
	return fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(objs...).
		WithStatusSubresource(&tesserav1alpha1.TrainingJob{}, &tesserav1alpha1.ServingGroup{}).Build()
}

// controlled marks obj as controlled by an object of kind, name and uid.
func controlled[T ctrlclient.Object](obj T, kind, name string, uid types.UID) T {
	obj.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: tesserav1alpha1.SchemeGroupVersion.String(), Kind: kind, Name: name, UID: uid, Controller: ptr.To(true)}})
	return obj
}

func TestCreateRefusesToAdopt(t *testing.T) {
	job := &tesserav1alpha1.TrainingJob{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x-0", UID: "job-uid"}}
	pg := func() *schedv1alpha1.PodGroup { return podGroup("x-0", "ns", 2) }
	pod := func(attempt string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x-0-worker-0", Labels: map[string]string{LabelAttempt: attempt}}}
	}
	tests := []struct {
		name     string
		existing ctrlclient.Object
		create   ctrlclient.Object
		conflict string // the NameConflictError's message; "" for none
		err      bool   // another error (retried)
	}{
		{name: "nothing there: created", create: pg()},
		{name: "the job's own PodGroup: used", existing: controlled(pg(), "TrainingJob", "x-0", "job-uid"), create: pg()},
		{name: "a ServingGroup's PodGroup of the name: refused, naming it",
			existing: controlled(pg(), "ServingGroup", "x", "sg-uid"), create: pg(),
			conflict: "PodGroup ns/x-0 exists and is not this object's (ServingGroup x): rename this object, or delete that one"},
		{name: "a PodGroup of an older job of the name: refused",
			existing: controlled(pg(), "TrainingJob", "x-0", "old-uid"), create: pg(),
			conflict: "PodGroup ns/x-0 exists and is not this object's (TrainingJob x-0): rename this object, or delete that one"},
		{name: "a user's PodGroup without a controller: refused",
			existing: pg(), create: pg(),
			conflict: "PodGroup ns/x-0 exists and is not this object's (no controller): rename this object, or delete that one"},
		{name: "the job's pod of the same attempt: used",
			existing: controlled(pod("1"), "TrainingJob", "x-0", "job-uid"), create: pod("1")},
		{name: "the job's pod of the last attempt: not taken for this one",
			existing: controlled(pod("0"), "TrainingJob", "x-0", "job-uid"), create: pod("1"), err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var objs []ctrlclient.Object
			if tt.existing != nil {
				objs = append(objs, tt.existing)
			}
			c := fakeClient(t, objs...)
			err := create(t.Context(), c, job, tt.create)
			var conflict *NameConflictError
			switch {
			case tt.conflict != "":
				if !errors.As(err, &conflict) || conflict.Error() != tt.conflict {
					t.Fatalf("create = %v, want the name conflict %q", err, tt.conflict)
				}
			case tt.err:
				if err == nil || errors.As(err, &conflict) {
					t.Fatalf("create = %v, want an error that is not a name conflict", err)
				}
			case err != nil:
				t.Fatalf("create = %v", err)
			}
			if tt.existing == nil {
				return
			}
			got := tt.existing.DeepCopyObject().(ctrlclient.Object)
			if err := c.Get(t.Context(), ctrlclient.ObjectKeyFromObject(tt.existing), got); err != nil {
				t.Fatal(err)
			}
			if !equalOwners(got.GetOwnerReferences(), tt.existing.GetOwnerReferences()) {
				t.Errorf("owner references changed to %v", got.GetOwnerReferences())
			}
		})
	}
}

func equalOwners(a, b []metav1.OwnerReference) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].UID != b[i].UID {
			return false
		}
	}
	return true
}

func TestDeleteOwnedLeavesOthersObjects(t *testing.T) {
	sg := &tesserav1alpha1.ServingGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x", UID: "sg-uid"}}
	ours := controlled(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x-ray"}}, "ServingGroup", "x", "sg-uid")
	theirs := controlled(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x"}}, "TrainingJob", "x", "job-uid")
	c := fakeClient(t, ours, theirs)
	for _, svc := range servingServices(sg) {
		if err := deleteOwned(t.Context(), c, sg, svc); err != nil {
			t.Fatal(err)
		}
	}
	var left corev1.ServiceList
	if err := c.List(t.Context(), &left); err != nil {
		t.Fatal(err)
	}
	if len(left.Items) != 1 || left.Items[0].Name != "x" {
		t.Fatalf("Services left: %v, want only the TrainingJob's x", left.Items)
	}
}

func TestTrainingJobPodsAreTheOnesItControls(t *testing.T) {
	job := &tesserav1alpha1.TrainingJob{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x", UID: "job-uid"}}
	labelled := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{LabelTrainingJob: "x"}}}
	}
	c := fakeClient(t,
		controlled(labelled("x-worker-0"), "TrainingJob", "x", "job-uid"),
		controlled(labelled("x-worker-1"), "TrainingJob", "x", "old-uid"),
		labelled("someone-elses"))
	r := &TrainingJobReconciler{Client: c}
	pods, err := r.pods(t.Context(), job)
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 1 || pods[0].Name != "x-worker-0" {
		t.Fatalf("pods = %v, want only x-worker-0", pods)
	}
}

func TestTrainingJobWaitsOnANameConflict(t *testing.T) {
	job := &tesserav1alpha1.TrainingJob{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x", UID: "job-uid", Finalizers: []string{finalizer}}}
	foreign := controlled(&kueue.Workload{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: WorkloadName("x")}}, "TrainingJob", "x", "old-uid")
	c := fakeClient(t, job, foreign)
	recorder := events.NewFakeRecorder(10)
	r := &TrainingJobReconciler{Client: c, Recorder: recorder}
	req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "x"}}
	for range 2 {
		res, err := r.Reconcile(t.Context(), req)
		if err != nil || res.RequeueAfter != nameConflictRecheck {
			t.Fatalf("Reconcile = %v, %v; want a recheck after %s", res, err, nameConflictRecheck)
		}
	}
	var got tesserav1alpha1.TrainingJob
	if err := c.Get(t.Context(), req.NamespacedName, &got); err != nil {
		t.Fatal(err)
	}
	cond := apimeta.FindStatusCondition(got.Status.Conditions, string(PhaseQueued))
	if got.Status.Phase != PhaseQueued || cond == nil || cond.Reason != reasonNameConflict || !strings.Contains(cond.Message, "Workload ns/trainingjob-x") {
		t.Fatalf("phase %s, condition %+v; want Queued with reason NameConflict naming the Workload", got.Status.Phase, cond)
	}
	if n := len(recorder.Events); n != 1 {
		t.Errorf("%d events, want one NameConflict event for the conflict, not one per reconcile", n)
	}
	var wl kueue.Workload
	if err := c.Get(t.Context(), ctrlclient.ObjectKeyFromObject(foreign), &wl); err != nil || wl.OwnerReferences[0].UID != "old-uid" {
		t.Fatalf("the foreign Workload was touched: %v, %v", err, wl.OwnerReferences)
	}
}

func TestServingGroupWaitsOnANameConflict(t *testing.T) {
	sg := &tesserav1alpha1.ServingGroup{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x", UID: "sg-uid", Finalizers: []string{finalizer}},
		Spec:       tesserav1alpha1.ServingGroupSpec{Replicas: 1, TensorParallelSize: 1, GPUsPerNode: 8, QueueName: "q"},
	}
	foreign := controlled(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "x"}}, "TrainingJob", "x", "job-uid")
	c := fakeClient(t, sg, foreign)
	r := &ServingGroupReconciler{Client: c, Recorder: events.NewFakeRecorder(10), Clock: clocktesting.NewFakeClock(time.Now())}
	req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "x"}}
	res, err := r.Reconcile(t.Context(), req)
	if err != nil || res.RequeueAfter != nameConflictRecheck {
		t.Fatalf("Reconcile = %v, %v; want a recheck after %s", res, err, nameConflictRecheck)
	}
	var got tesserav1alpha1.ServingGroup
	if err := c.Get(t.Context(), req.NamespacedName, &got); err != nil {
		t.Fatal(err)
	}
	cond := apimeta.FindStatusCondition(got.Status.Conditions, ConditionAvailable)
	if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != reasonNameConflict || !strings.Contains(cond.Message, "Service ns/x exists and is not this object's (TrainingJob x)") {
		t.Fatalf("Available = %+v; want False with reason NameConflict naming the Service", cond)
	}
}
