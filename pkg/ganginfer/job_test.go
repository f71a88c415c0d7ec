package ganginfer

import (
	"errors"
	"strings"
	"testing"

	kubeflowv1 "github.com/kubeflow/training-operator/pkg/apis/kubeflow.org/v1"
	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	jobsetv1alpha2 "sigs.k8s.io/jobset/api/jobset/v1alpha2"
	lwsv1 "sigs.k8s.io/lws/api/leaderworkerset/v1"
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

func TestJobGang(t *testing.T) {
	for _, tc := range []struct {
		name    string
		job     *batchv1.Job
		want    int32
		gang    bool
		wantErr string
	}{
		{name: "non-indexed", job: testJob("j", 4, 4, false, nil)},
		{name: "indexed", job: testJob("j", 3, 3, true, nil), want: 3, gang: true},
		{name: "indexed, one pod at a time", job: testJob("j", 1, 5, true, nil)},
		{name: "indexed work queue", job: testJob("j", 3, 6, true, nil)},
		{name: "indexed work queue, asked for", job: testJob("j", 3, 6, true, map[string]string{GangAnnotation: "true"}), want: 3, gang: true},
		{name: "fewer completions than parallelism", job: testJob("j", 4, 2, true, nil), want: 2, gang: true},
		{name: "asked for", job: testJob("j", 4, 8, false, map[string]string{GangAnnotation: "true"}), want: 4, gang: true},
		{name: "refused", job: testJob("j", 4, 4, true, map[string]string{GangAnnotation: "false"})},
		{name: "minMember set", job: testJob("j", 4, 4, true, map[string]string{GangMinMemberAnnotation: "2"}), want: 2, gang: true},
		{name: "bad gang value", job: testJob("j", 4, 4, true, map[string]string{GangAnnotation: "yes"}), wantErr: GangAnnotation},
		{name: "minMember 0", job: testJob("j", 4, 4, true, map[string]string{GangMinMemberAnnotation: "0"}), wantErr: GangMinMemberAnnotation},
		{name: "minMember above parallelism", job: testJob("j", 4, 4, true, map[string]string{GangMinMemberAnnotation: "5"}), wantErr: GangMinMemberAnnotation},
		{name: "minMember not a number", job: testJob("j", 4, 4, true, map[string]string{GangMinMemberAnnotation: "all"}), wantErr: GangMinMemberAnnotation},
	} {
		got, gang, err := JobGang(tc.job)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want one naming %s", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want || gang != tc.gang {
			t.Errorf("%s: JobGang = %d, %v, %v; want %d, %v", tc.name, got, gang, err, tc.want, tc.gang)
		}
	}
}

func TestRemainingMinMember(t *testing.T) {
	job := testJob("j", 4, 4, true, nil)
	if got := remainingMinMember(job, 4); got != 4 {
		t.Errorf("no index done: %d, want 4", got)
	}
	job.Status.Succeeded = 3 // the fourth failed and is retried alone
	if got := remainingMinMember(job, 4); got != 1 {
		t.Errorf("three of four done: %d, want 1", got)
	}
}

// owners is an Owners over maps; a nil map is an API not served.
type owners struct {
	jobs        map[string]*batchv1.Job
	jobSets     map[string]*jobsetv1alpha2.JobSet
	lwss        map[string]*lwsv1.LeaderWorkerSet
	pyTorchJobs map[string]*kubeflowv1.PyTorchJob
}

func get[T any](m map[string]*T, resource, name string) (*T, error) {
	if m == nil {
		return nil, ErrNotServed
	}
	if o, ok := m[name]; ok {
		return o, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: resource}, name)
}

func (o owners) Job(_, name string) (*batchv1.Job, error) { return get(o.jobs, "jobs", name) }
func (o owners) JobSet(_, name string) (*jobsetv1alpha2.JobSet, error) {
	return get(o.jobSets, "jobsets", name)
}
func (o owners) LeaderWorkerSet(_, name string) (*lwsv1.LeaderWorkerSet, error) {
	return get(o.lwss, "leaderworkersets", name)
}

func (o owners) PyTorchJob(_, name string) (*kubeflowv1.PyTorchJob, error) {
	return get(o.pyTorchJobs, "pytorchjobs", name)
}

func podOf(owner metav1.Object, gvk schema.GroupVersionKind, labels map[string]string) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", Labels: labels,
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(owner, gvk)}}}
}

func TestInferFromAJob(t *testing.T) {
	job := testJob("train", 4, 4, true, nil)
	o := owners{jobs: map[string]*batchv1.Job{"train": job}}
	g, err := Infer(o, podOf(job, jobKind, nil))
	if err != nil || g == nil || g.Name != "train" || g.MinMember != 4 || g.Owner.UID != job.UID || ptr.Deref(g.Owner.BlockOwnerDeletion, true) {
		t.Fatalf("Infer = %+v, %v; want gang train of 4 owned by the Job, not blocking its deletion", g, err)
	}
	// A Job of the name but another UID: the pod's own is not seen yet.
	other := testJob("train", 4, 4, true, nil)
	other.UID = "job-train-2"
	if _, err := Infer(owners{jobs: map[string]*batchv1.Job{"train": other}}, podOf(job, jobKind, nil)); !apierrors.IsNotFound(err) {
		t.Errorf("Infer with a Job of another UID: %v, want NotFound", err)
	}
	bad := testJob("bad", 4, 4, true, map[string]string{GangAnnotation: "yes"})
	var invalid *InvalidError
	if _, err := Infer(owners{jobs: map[string]*batchv1.Job{"bad": bad}}, podOf(bad, jobKind, nil)); !errors.As(err, &invalid) || invalid.Object != bad {
		t.Errorf("Infer with a bad annotation: %v, want an InvalidError on the Job", err)
	}
	lone := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "lone"}}
	if g, err := Infer(o, lone); g != nil || err != nil {
		t.Errorf("Infer of a pod without a controller = %+v, %v", g, err)
	}
	rs := &metav1.ObjectMeta{Name: "web", UID: "rs"}
	if g, err := Infer(o, podOf(rs, schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"}, nil)); g != nil || err != nil {
		t.Errorf("Infer of a ReplicaSet's pod = %+v, %v; want no gang", g, err)
	}
}

func testJobSet(name string, order jobsetv1alpha2.StartupPolicyOptions, annotations map[string]string, rjobs ...jobsetv1alpha2.ReplicatedJob) *jobsetv1alpha2.JobSet {
	js := &jobsetv1alpha2.JobSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("js-" + name), Annotations: annotations},
		Spec:       jobsetv1alpha2.JobSetSpec{ReplicatedJobs: rjobs},
	}
	if order != "" {
		js.Spec.StartupPolicy = &jobsetv1alpha2.StartupPolicy{StartupPolicyOrder: order}
	}
	return js
}

func rjob(name string, replicas, parallelism, completions int32) jobsetv1alpha2.ReplicatedJob {
	return jobsetv1alpha2.ReplicatedJob{Name: name, Replicas: replicas,
		Template: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Parallelism: ptr.To(parallelism), Completions: ptr.To(completions)}}}
}

func succeededJobs(js *jobsetv1alpha2.JobSet, rjob string, n int32) *jobsetv1alpha2.JobSet {
	js.Status.ReplicatedJobsStatus = append(js.Status.ReplicatedJobsStatus, jobsetv1alpha2.ReplicatedJobStatus{Name: rjob, Succeeded: n})
	return js
}

func TestJobSetGang(t *testing.T) {
	driverWorkers := []jobsetv1alpha2.ReplicatedJob{rjob("driver", 1, 1, 1), rjob("workers", 2, 4, 4)}
	dependent := rjob("workers", 2, 4, 4)
	dependent.DependsOn = []jobsetv1alpha2.DependsOn{{Name: "driver", Status: jobsetv1alpha2.DependencyReady}}
	for _, tc := range []struct {
		name     string
		js       *jobsetv1alpha2.JobSet
		rjob     string
		wantName string
		want     int32
		wantErr  string
	}{
		{name: "whole set", js: testJobSet("js", "", nil, driverWorkers...), rjob: "driver", wantName: "js", want: 9},
		{name: "work queue counts pods at once", js: testJobSet("js", "", nil, rjob("w", 3, 2, 10)), rjob: "w", wantName: "js", want: 6},
		{name: "in order: each replicated job", js: testJobSet("js", jobsetv1alpha2.InOrder, nil, driverWorkers...), rjob: "workers", wantName: "js-workers", want: 8},
		{name: "dependsOn: each replicated job", js: testJobSet("js", "", nil, rjob("driver", 1, 1, 1), dependent), rjob: "workers", wantName: "js-workers", want: 8},
		{name: "in order, a stage of one pod", js: testJobSet("js", jobsetv1alpha2.InOrder, nil, driverWorkers...), rjob: "driver"},
		{name: "one pod in all", js: testJobSet("js", "", nil, rjob("solo", 1, 1, 1)), rjob: "solo"},
		{name: "refused", js: testJobSet("js", "", map[string]string{GangAnnotation: "false"}, driverWorkers...), rjob: "driver"},
		{name: "minMember set", js: testJobSet("js", "", map[string]string{GangMinMemberAnnotation: "5"}, driverWorkers...), rjob: "workers", wantName: "js", want: 5},
		{name: "minMember above size", js: testJobSet("js", "", map[string]string{GangMinMemberAnnotation: "10"}, driverWorkers...), rjob: "workers", wantErr: GangMinMemberAnnotation},
		{name: "minMember when staged", js: testJobSet("js", jobsetv1alpha2.InOrder, map[string]string{GangMinMemberAnnotation: "2"}, driverWorkers...), rjob: "workers", wantErr: "in stages"},
		{name: "bad gang value", js: testJobSet("js", "", map[string]string{GangAnnotation: "on"}, driverWorkers...), rjob: "workers", wantErr: GangAnnotation},
		{name: "not a replicated job's pod", js: testJobSet("js", "", nil, driverWorkers...), rjob: ""},
		{name: "a succeeded job's pods leave the gang", js: succeededJobs(testJobSet("js", "", nil, driverWorkers...), "workers", 1), rjob: "driver", wantName: "js", want: 5},
		{name: "every job succeeded but one retried", js: succeededJobs(testJobSet("js", "", nil, driverWorkers...), "workers", 2), rjob: "driver", wantName: "js", want: 1},
	} {
		g, err := JobSetGang(tc.js, tc.rjob)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want one naming %s", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if tc.wantName == "" {
			if g != nil {
				t.Errorf("%s: gang %+v, want none", tc.name, g)
			}
			continue
		}
		if g == nil || g.Name != tc.wantName || g.MinMember != tc.want || g.Owner.Kind != "JobSet" || g.Owner.UID != tc.js.UID {
			t.Errorf("%s: gang %+v, want %s of %d owned by the JobSet", tc.name, g, tc.wantName, tc.want)
		}
	}
}

// A JobSet's pods are ganged by the JobSet, not by their own (Indexed)
// Jobs; without the JobSet API, the Job's rule applies.
func TestInferFromAJobSetsJob(t *testing.T) {
	js := testJobSet("js", "", nil, rjob("driver", 1, 1, 1), rjob("workers", 2, 4, 4))
	job := testJob("js-workers-0", 4, 4, true, nil)
	job.Labels = map[string]string{jobsetv1alpha2.ReplicatedJobNameKey: "workers"}
	job.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(js, jobsetv1alpha2.SchemeGroupVersion.WithKind("JobSet"))}
	jobs := map[string]*batchv1.Job{job.Name: job}
	pod := podOf(job, jobKind, nil)
	g, err := Infer(owners{jobs: jobs, jobSets: map[string]*jobsetv1alpha2.JobSet{"js": js}}, pod)
	if err != nil || g == nil || g.Name != "js" || g.MinMember != 9 {
		t.Errorf("Infer = %+v, %v; want the JobSet's gang js of 9", g, err)
	}
	if _, err := Infer(owners{jobs: jobs, jobSets: map[string]*jobsetv1alpha2.JobSet{}}, pod); !apierrors.IsNotFound(err) {
		t.Errorf("Infer before the JobSet is seen: %v, want NotFound", err)
	}
	g, err = Infer(owners{jobs: jobs}, pod)
	if err != nil || g == nil || g.Name != job.Name || g.MinMember != 4 {
		t.Errorf("Infer without the JobSet API = %+v, %v; want the Job's own gang of 4", g, err)
	}
}

func testLWS(size int32, policy lwsv1.StartupPolicyType, annotations map[string]string) *lwsv1.LeaderWorkerSet {
	return &lwsv1.LeaderWorkerSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "vllm", UID: "lws-vllm", Annotations: annotations},
		Spec: lwsv1.LeaderWorkerSetSpec{StartupPolicy: policy,
			LeaderWorkerTemplate: lwsv1.LeaderWorkerTemplate{Size: ptr.To(size)}},
	}
}

func TestLeaderWorkerSetGang(t *testing.T) {
	for _, tc := range []struct {
		name    string
		lws     *lwsv1.LeaderWorkerSet
		want    int32
		wantErr string
	}{
		{name: "leader and worker", lws: testLWS(2, lwsv1.LeaderCreatedStartupPolicy, nil), want: 2},
		{name: "size 1", lws: testLWS(1, lwsv1.LeaderCreatedStartupPolicy, nil)},
		{name: "leader ready first", lws: testLWS(4, lwsv1.LeaderReadyStartupPolicy, nil)},
		{name: "leader ready, gang asked for", lws: testLWS(4, lwsv1.LeaderReadyStartupPolicy, map[string]string{GangAnnotation: "true"}), wantErr: "LeaderReady"},
		{name: "refused", lws: testLWS(4, lwsv1.LeaderCreatedStartupPolicy, map[string]string{GangAnnotation: "false"})},
		{name: "minMember set", lws: testLWS(4, lwsv1.LeaderCreatedStartupPolicy, map[string]string{GangMinMemberAnnotation: "3"}), want: 3},
		{name: "minMember above size", lws: testLWS(4, lwsv1.LeaderCreatedStartupPolicy, map[string]string{GangMinMemberAnnotation: "5"}), wantErr: GangMinMemberAnnotation},
	} {
		g, err := LeaderWorkerSetGang(tc.lws, "3")
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want one naming %s", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if tc.want == 0 {
			if g != nil {
				t.Errorf("%s: gang %+v, want none", tc.name, g)
			}
			continue
		}
		if g == nil || g.Name != "vllm-3" || g.MinMember != tc.want || g.Owner.Kind != "LeaderWorkerSet" || g.Owner.UID != tc.lws.UID {
			t.Errorf("%s: gang %+v, want vllm-3 of %d owned by the LeaderWorkerSet", tc.name, g, tc.want)
		}
	}
}

// Leader and workers of one group share a gang: the leader's controller
// is the LeaderWorkerSet's StatefulSet, a worker's its group's.
func TestInferFromALeaderWorkerSet(t *testing.T) {
	lws := testLWS(2, lwsv1.LeaderCreatedStartupPolicy, nil)
	sts := schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}
	labels := map[string]string{lwsv1.SetNameLabelKey: "vllm", lwsv1.GroupIndexLabelKey: "1"}
	leader := podOf(&metav1.ObjectMeta{Name: "vllm", UID: "sts-leader"}, sts, labels)
	worker := podOf(&metav1.ObjectMeta{Name: "vllm-1", UID: "sts-1"}, sts, labels)
	o := owners{lwss: map[string]*lwsv1.LeaderWorkerSet{"vllm": lws}}
	for _, p := range []*v1.Pod{leader, worker} {
		if g, err := Infer(o, p); err != nil || g == nil || g.Name != "vllm-1" || g.MinMember != 2 {
			t.Errorf("Infer = %+v, %v; want gang vllm-1 of 2", g, err)
		}
	}
	if g, err := Infer(owners{}, leader); g != nil || err != nil {
		t.Errorf("Infer without the LeaderWorkerSet API = %+v, %v; want no gang", g, err)
	}
	if _, err := Infer(owners{lwss: map[string]*lwsv1.LeaderWorkerSet{}}, leader); !apierrors.IsNotFound(err) {
		t.Errorf("Infer before the LeaderWorkerSet is seen: %v, want NotFound", err)
	}
}

// An event needs its object's kind, which objects from informers lack.
func TestInvalidErrorNamesItsKind(t *testing.T) {
	lws := testLWS(4, lwsv1.LeaderCreatedStartupPolicy, map[string]string{GangAnnotation: "maybe"})
	_, err := Infer(owners{lwss: map[string]*lwsv1.LeaderWorkerSet{"vllm": lws}}, podOf(&metav1.ObjectMeta{Name: "vllm", UID: "sts"},
		schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"},
		map[string]string{lwsv1.SetNameLabelKey: "vllm", lwsv1.GroupIndexLabelKey: "0"}))
	var invalid *InvalidError
	if !errors.As(err, &invalid) {
		t.Fatalf("Infer = %v, want an InvalidError", err)
	}
	if gvk := invalid.EventObject().GetObjectKind().GroupVersionKind(); gvk != lwsv1.SchemeGroupVersion.WithKind("LeaderWorkerSet") {
		t.Errorf("event object's kind %v, want LeaderWorkerSet", gvk)
	}
	if !lws.GetObjectKind().GroupVersionKind().Empty() {
		t.Errorf("the cached object was changed")
	}
	if !strings.HasPrefix(invalid.Error(), "LeaderWorkerSet ns/vllm: ") {
		t.Errorf("message %q, want it to name the LeaderWorkerSet", invalid.Error())
	}
}

func testPyTorchJob(workers int32, annotations map[string]string) *kubeflowv1.PyTorchJob {
	return &kubeflowv1.PyTorchJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "llama-ft", UID: "ptj", Annotations: annotations},
		Spec: kubeflowv1.PyTorchJobSpec{PyTorchReplicaSpecs: map[kubeflowv1.ReplicaType]*kubeflowv1.ReplicaSpec{
			kubeflowv1.PyTorchJobReplicaTypeMaster: {Replicas: ptr.To[int32](1)},
			kubeflowv1.PyTorchJobReplicaTypeWorker: {Replicas: ptr.To(workers)},
		}},
	}
}

func TestPyTorchJobGang(t *testing.T) {
	minAvailable := testPyTorchJob(4, nil)
	minAvailable.Spec.RunPolicy.SchedulingPolicy = &kubeflowv1.SchedulingPolicy{MinAvailable: ptr.To[int32](3)}
	elastic := testPyTorchJob(4, nil)
	elastic.Spec.ElasticPolicy = &kubeflowv1.ElasticPolicy{MinReplicas: ptr.To[int32](2)}
	tooMany := testPyTorchJob(4, nil)
	tooMany.Spec.RunPolicy.SchedulingPolicy = &kubeflowv1.SchedulingPolicy{MinAvailable: ptr.To[int32](9)}
	masterOnly := &kubeflowv1.PyTorchJob{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "solo", UID: "solo"},
		Spec: kubeflowv1.PyTorchJobSpec{PyTorchReplicaSpecs: map[kubeflowv1.ReplicaType]*kubeflowv1.ReplicaSpec{kubeflowv1.PyTorchJobReplicaTypeMaster: {}}}}
	for _, tc := range []struct {
		name    string
		job     *kubeflowv1.PyTorchJob
		want    int32
		wantErr string
	}{
		{name: "master and four workers", job: testPyTorchJob(4, nil), want: 5},
		{name: "minAvailable", job: minAvailable, want: 3},
		{name: "elastic minimum", job: elastic, want: 2},
		{name: "minAvailable above the replicas", job: tooMany, wantErr: "minAvailable"},
		{name: "one pod", job: masterOnly},
		{name: "refused", job: testPyTorchJob(4, map[string]string{GangAnnotation: "false"})},
		{name: "minMember set", job: testPyTorchJob(4, map[string]string{GangMinMemberAnnotation: "4"}), want: 4},
		{name: "minMember above the replicas", job: testPyTorchJob(4, map[string]string{GangMinMemberAnnotation: "6"}), wantErr: GangMinMemberAnnotation},
	} {
		g, err := PyTorchJobGang(tc.job)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want one naming %s", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if tc.want == 0 {
			if g != nil {
				t.Errorf("%s: gang %+v, want none", tc.name, g)
			}
			continue
		}
		if g == nil || g.Name != tc.job.Name || g.MinMember != tc.want || g.Owner.Kind != "PyTorchJob" || g.Owner.UID != tc.job.UID {
			t.Errorf("%s: gang %+v, want %s of %d owned by the PyTorchJob", tc.name, g, tc.job.Name, tc.want)
		}
	}
}

// A PyTorchJob's pod without a pod-group label (its operator names no
// gang scheduler) joins the job's gang; without the API, no gang.
func TestInferFromAPyTorchJob(t *testing.T) {
	job := testPyTorchJob(4, nil)
	pod := podOf(job, kubeflowv1.SchemeGroupVersion.WithKind("PyTorchJob"), nil)
	if g, err := Infer(owners{pyTorchJobs: map[string]*kubeflowv1.PyTorchJob{"llama-ft": job}}, pod); err != nil || g == nil || g.MinMember != 5 {
		t.Errorf("Infer = %+v, %v; want the job's gang of 5", g, err)
	}
	if g, err := Infer(owners{}, pod); g != nil || err != nil {
		t.Errorf("Infer without the PyTorchJob API = %+v, %v; want no gang", g, err)
	}
	if _, err := Infer(owners{pyTorchJobs: map[string]*kubeflowv1.PyTorchJob{}}, pod); !apierrors.IsNotFound(err) {
		t.Errorf("Infer before the PyTorchJob is seen: %v, want NotFound", err)
	}
}
