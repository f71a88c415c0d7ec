package ganginfer

import (
	"errors"
	"fmt"

	kubeflowv1 "github.com/kubeflow/training-operator/pkg/apis/kubeflow.org/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

var pyTorchJobKind = kubeflowv1.SchemeGroupVersion.WithKind(kubeflowv1.PyTorchJobKind)

// inferFromPyTorchJob serves a PyTorchJob's pod that carries no pod-group
// label: its training-operator runs without a gang scheduler (one run with
// --gang-scheduler-name labels its pods into the PodGroup it writes, and
// Tessera uses that as it is).
func inferFromPyTorchJob(owners Owners, namespace string, ref *metav1.OwnerReference) (*Gang, error) {
	job, err := owners.PyTorchJob(namespace, ref.Name)
	if errors.Is(err, ErrNotServed) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := notFoundIfOther(job, ref, "pytorchjobs"); err != nil {
		return nil, err
	}
	g, err := PyTorchJobGang(job)
	if err != nil {
		return nil, &InvalidError{Object: job, GVK: pyTorchJobKind, Name: namespace + "/" + job.Name, Err: err}
	}
	return g, nil
}

// PyTorchJobGang returns the gang of job's pods, named after it: every
// replica (master and workers) by default; runPolicy.schedulingPolicy.
// minAvailable when set; for an elastic job (elasticPolicy.minReplicas),
// that minimum; nil for a job of one pod.
func PyTorchJobGang(job *kubeflowv1.PyTorchJob) (*Gang, error) {
	var size int32
	for _, spec := range job.Spec.PyTorchReplicaSpecs {
		if spec != nil {
			size += ptr.Deref(spec.Replicas, 1)
		}
	}
	def := size
	if ep := job.Spec.ElasticPolicy; ep != nil && ep.MinReplicas != nil {
		def = *ep.MinReplicas
	}
	if sp := job.Spec.RunPolicy.SchedulingPolicy; sp != nil && sp.MinAvailable != nil {
		def = *sp.MinAvailable
	}
	if def < 1 || def > size {
		return nil, fmt.Errorf("its minimum of %d pods (runPolicy.schedulingPolicy.minAvailable or elasticPolicy.minReplicas) is not from 1 to its %d replicas", def, size)
	}
	gang, set, err := asked(job.Annotations)
	if err != nil {
		return nil, err
	}
	if !set {
		gang = size >= 2
	}
	if !gang {
		return nil, nil
	}
	minMember, err := minMemberOf(job.Annotations, size, def, "the job's replicas")
	if err != nil {
		return nil, err
	}
	return &Gang{Name: job.Name, Owner: controllerRef(job, pyTorchJobKind), MinMember: minMember}, nil
}
