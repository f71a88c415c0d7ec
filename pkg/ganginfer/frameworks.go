package ganginfer

import (
	"errors"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	jobsetv1alpha2 "sigs.k8s.io/jobset/api/jobset/v1alpha2"
	lwsv1 "sigs.k8s.io/lws/api/leaderworkerset/v1"
)

var (
	jobSetKind = jobsetv1alpha2.SchemeGroupVersion.WithKind("JobSet")
	lwsKind    = lwsv1.SchemeGroupVersion.WithKind("LeaderWorkerSet")
)

func inferFromJobSet(owners Owners, job *batchv1.Job, ref *metav1.OwnerReference) (*Gang, error) {
	js, err := owners.JobSet(job.Namespace, ref.Name)
	if err != nil {
		return nil, err
	}
	if err := notFoundIfOther(js, ref, "jobsets"); err != nil {
		return nil, err
	}
	g, err := JobSetGang(js, job.Labels[jobsetv1alpha2.ReplicatedJobNameKey])
	if err != nil {
		return nil, &InvalidError{Object: js, GVK: jobSetKind, Name: js.Namespace + "/" + js.Name, Err: err}
	}
	return g, nil
}

// JobSetGang returns the gang of the pods of js's replicated job rjob; nil
// when they form none. A JobSet whose replicated jobs start together (the
// default startup policy, AnyOrder, and no dependsOn) is one gang of all
// its pods, named after it. One that starts them in stages (InOrder, or
// dependsOn) cannot be placed whole, since a stage's jobs exist only once
// the stage before runs: each replicated job is then a gang of its own,
// named <jobset>-<replicated job>. minMember counts only the pods of Jobs
// not yet succeeded.
func JobSetGang(js *jobsetv1alpha2.JobSet, rjob string) (*Gang, error) {
	staged := js.Spec.StartupPolicy != nil && js.Spec.StartupPolicy.StartupPolicyOrder == jobsetv1alpha2.InOrder
	succeeded := map[string]int32{}
	for _, st := range js.Status.ReplicatedJobsStatus {
		succeeded[st.Name] = st.Succeeded
	}
	var all, own, allLeft, ownLeft int32
	found := false
	for _, r := range js.Spec.ReplicatedJobs {
		staged = staged || len(r.DependsOn) > 0
		perJob := podsAtOnce(r.Template.Spec)
		n := max(0, r.Replicas) * perJob
		// Pods of succeeded Jobs do not come back: a retried pod of
		// another Job waits for no one of them.
		left := max(0, r.Replicas-succeeded[r.Name]) * perJob
		all += n
		allLeft += left
		if r.Name == rjob {
			own, ownLeft, found = n, left, true
		}
	}
	if !found {
		// Not a pod of one of its replicated jobs (no label): alone.
		return nil, nil
	}
	gang, set, err := asked(js.Annotations)
	if err != nil {
		return nil, err
	}
	size, left, name := all, allLeft, js.Name
	if staged {
		size, left, name = own, ownLeft, js.Name+"-"+rjob
		if _, minSet := js.Annotations[GangMinMemberAnnotation]; minSet {
			return nil, fmt.Errorf("annotation %s applies to a JobSet whose replicated jobs start together; this one starts them in stages (startupPolicy InOrder or dependsOn), each its own gang", GangMinMemberAnnotation)
		}
	}
	if !set {
		gang = size >= 2
	}
	if !gang {
		return nil, nil
	}
	minMember, err := minMemberOf(js.Annotations, size, size, "the JobSet's pod count")
	if err != nil {
		return nil, err
	}
	return &Gang{Name: name, Owner: controllerRef(js, jobSetKind), MinMember: max(1, min(minMember, left))}, nil
}

func inferFromLeaderWorkerSet(owners Owners, pod *v1.Pod) (*Gang, error) {
	group, ok := pod.Labels[lwsv1.GroupIndexLabelKey]
	if !ok {
		return nil, nil
	}
	lws, err := owners.LeaderWorkerSet(pod.Namespace, pod.Labels[lwsv1.SetNameLabelKey])
	if errors.Is(err, ErrNotServed) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	g, err := LeaderWorkerSetGang(lws, group)
	if err != nil {
		return nil, &InvalidError{Object: lws, GVK: lwsKind, Name: lws.Namespace + "/" + lws.Name, Err: err}
	}
	return g, nil
}

// LeaderWorkerSetGang returns the gang of group (its index) of lws: the
// leader and its workers, size pods named <lws>-<group>, one gang per
// group, so that each replica of a multi-host server is placed whole and a
// group added by scaling waits whole. With startupPolicy LeaderReady the
// workers are created only once the leader runs, so no gang is inferred.
func LeaderWorkerSetGang(lws *lwsv1.LeaderWorkerSet, group string) (*Gang, error) {
	size := ptr.Deref(lws.Spec.LeaderWorkerTemplate.Size, 1)
	leaderFirst := lws.Spec.StartupPolicy == lwsv1.LeaderReadyStartupPolicy
	gang, set, err := asked(lws.Annotations)
	if err != nil {
		return nil, err
	}
	if !set {
		gang = size >= 2 && !leaderFirst
	}
	if !gang {
		return nil, nil
	}
	if leaderFirst {
		return nil, fmt.Errorf("annotation %s: startupPolicy LeaderReady creates a group's workers only once its leader runs, so the group cannot be placed whole; use LeaderCreated", GangAnnotation)
	}
	minMember, err := minMemberOf(lws.Annotations, size, size, "the group's size")
	if err != nil {
		return nil, err
	}
	return &Gang{Name: lws.Name + "-" + group, Owner: controllerRef(lws, lwsKind), MinMember: minMember}, nil
}
