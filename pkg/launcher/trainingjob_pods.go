package launcher

import (
	"fmt"
	"maps"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/podgpu"
	"tessera.dev/tessera/pkg/queue"
)

// TrainingJob roles, which are also its Workload's PodSet names.
const (
	RoleWorker      = "workers"
	RoleCoordinator = "coordinator"
)

// RendezvousPort is torchrun's c10d rendezvous port on worker 0.
const RendezvousPort = 29500

// WorkloadName is the Kueue Workload of a TrainingJob.
func WorkloadName(job string) string { return "trainingjob-" + job }

// maxWorkers is the most workers a job asks for: nodes.max for an elastic
// run, else nodes.min.
func maxWorkers(job *tesserav1alpha1.TrainingJob) int32 {
	if job.Spec.Nodes.Max != nil {
		return *job.Spec.Nodes.Max
	}
	return job.Spec.Nodes.Min
}

// trainingPodSets are the job's PodSets: workers (count max, minCount min
// for an elastic run, so Kueue may admit fewer) and the optional
// coordinator. Their templates are what the pods will ask for.
func trainingPodSets(job *tesserav1alpha1.TrainingJob) []kueue.PodSet {
	workers := kueue.PodSet{
		Name:     RoleWorker,
		Count:    maxWorkers(job),
		Template: corev1.PodTemplateSpec{Spec: workerSpec(job)},
	}
	if workers.Count > job.Spec.Nodes.Min {
		workers.MinCount = &job.Spec.Nodes.Min
	}
	sets := []kueue.PodSet{workers}
	if job.Spec.Coordinator != nil {
		sets = append(sets, kueue.PodSet{
			Name: RoleCoordinator, Count: 1,
			Template: corev1.PodTemplateSpec{Spec: coordinatorSpec(job)},
		})
	}
	return sets
}

func workerSpec(job *tesserav1alpha1.TrainingJob) corev1.PodSpec {
	res := *job.Spec.Resources.DeepCopy()
	gpus := *resource.NewQuantity(int64(job.Spec.GPUsPerNode), resource.DecimalSI)
	if res.Requests == nil {
		res.Requests = corev1.ResourceList{}
	}
	if res.Limits == nil {
		res.Limits = corev1.ResourceList{}
	}
	res.Requests[podgpu.ResourceGPU], res.Limits[podgpu.ResourceGPU] = gpus, gpus
	return corev1.PodSpec{
		SchedulerName:                 SchedulerName,
		PriorityClassName:             job.Spec.PriorityClassName,
		RestartPolicy:                 corev1.RestartPolicyNever,
		NodeSelector:                  job.Spec.NodeSelector,
		TerminationGracePeriodSeconds: job.Spec.CheckpointGracePeriodSeconds,
		Volumes:                       job.Spec.Volumes,
		Containers: []corev1.Container{{
			Name:         "trainer",
			Image:        job.Spec.Image,
			Command:      job.Spec.Command,
			Args:         job.Spec.Args,
			Env:          job.Spec.Env,
			VolumeMounts: job.Spec.VolumeMounts,
			Resources:    res,
			Ports:        []corev1.ContainerPort{{Name: "c10d", ContainerPort: RendezvousPort}},
		}},
	}
}

func coordinatorSpec(job *tesserav1alpha1.TrainingJob) corev1.PodSpec {
	c := job.Spec.Coordinator
	image := c.Image
	if image == "" {
		image = job.Spec.Image
	}
	return corev1.PodSpec{
		SchedulerName:                 SchedulerName,
		PriorityClassName:             job.Spec.PriorityClassName,
		RestartPolicy:                 corev1.RestartPolicyNever,
		NodeSelector:                  job.Spec.NodeSelector,
		TerminationGracePeriodSeconds: job.Spec.CheckpointGracePeriodSeconds,
		Containers: []corev1.Container{{
			Name:      "coordinator",
			Image:     image,
			Command:   c.Command,
			Args:      c.Args,
			Env:       job.Spec.Env,
			Resources: c.Resources,
		}},
	}
}

// trainingPod is one pod of the job's gang for an attempt: worker rank
// (or the coordinator, rank -1), with torchrun's rendezvous wired through
// the headless Service and the flavor's node labels and tolerations applied.
func trainingPod(job *tesserav1alpha1.TrainingJob, role string, rank int, workers int32, attempt int32, flavor queue.FlavorPlacement) *corev1.Pod {
	name := fmt.Sprintf("%s-worker-%d", job.Name, rank)
	spec := workerSpec(job)
	if role == RoleCoordinator {
		name = job.Name + "-coordinator"
		spec = coordinatorSpec(job)
	}
	spec.Hostname = name
	spec.Subdomain = job.Name
	applyFlavor(&spec, flavor)
	spec.Containers[0].Env = append(torchrunEnv(job, rank, workers, attempt), spec.Containers[0].Env...)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   job.Namespace,
			Annotations: job.Spec.PodAnnotations,
			Labels: map[string]string{
				LabelTrainingJob:            job.Name,
				LabelRole:                   role,
				LabelAttempt:                strconv.Itoa(int(attempt)),
				queue.LabelWorkload:         WorkloadName(job.Name),
				queue.LabelPodSet:           role,
				schedv1alpha1.PodGroupLabel: job.Name,
			},
		},
		Spec: spec,
	}
}

// torchrunEnv is the rendezvous environment: the classic MASTER_ADDR /
// NODE_RANK variables, and torchrun's own PET_* arguments for a c10d
// rendezvous on worker 0, one rendezvous id per attempt. An elastic job
// runs with PET_NNODES=min:max.
func torchrunEnv(job *tesserav1alpha1.TrainingJob, rank int, workers int32, attempt int32) []corev1.EnvVar {
	master := fmt.Sprintf("%s-worker-0.%s.%s.svc", job.Name, job.Name, job.Namespace)
	nnodes := strconv.Itoa(int(workers))
	if job.Spec.Nodes.Max != nil && *job.Spec.Nodes.Max > job.Spec.Nodes.Min {
		nnodes = fmt.Sprintf("%d:%d", job.Spec.Nodes.Min, *job.Spec.Nodes.Max)
	}
	nproc := strconv.Itoa(int(job.Spec.GPUsPerNode))
	env := []corev1.EnvVar{
		{Name: "MASTER_ADDR", Value: master},
		{Name: "MASTER_PORT", Value: strconv.Itoa(RendezvousPort)},
		{Name: "NNODES", Value: strconv.Itoa(int(workers))},
		{Name: "NPROC_PER_NODE", Value: nproc},
		{Name: "PET_NNODES", Value: nnodes},
		{Name: "PET_NPROC_PER_NODE", Value: nproc},
		{Name: "PET_RDZV_BACKEND", Value: "c10d"},
		{Name: "PET_RDZV_ENDPOINT", Value: fmt.Sprintf("%s:%d", master, RendezvousPort)},
		{Name: "PET_RDZV_ID", Value: fmt.Sprintf("%s-%d", job.UID, attempt)},
		// The launcher restarts the whole gang; torchrun does not retry alone.
		{Name: "PET_MAX_RESTARTS", Value: "0"},
	}
	if rank >= 0 {
		env = append(env,
			corev1.EnvVar{Name: "NODE_RANK", Value: strconv.Itoa(rank)},
			corev1.EnvVar{Name: "PET_NODE_RANK", Value: strconv.Itoa(rank)})
	}
	return env
}

// headlessService gives every pod of the job a stable DNS name
// (<pod>.<job>.<namespace>.svc) for the rendezvous, ready or not.
func headlessService(job *tesserav1alpha1.TrainingJob) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: job.Name, Namespace: job.Namespace, Labels: map[string]string{LabelTrainingJob: job.Name}},
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			PublishNotReadyAddresses: true,
			Selector:                 map[string]string{LabelTrainingJob: job.Name},
			Ports:                    []corev1.ServicePort{{Name: "c10d", Port: RendezvousPort, TargetPort: intstr.FromInt32(RendezvousPort)}},
		},
	}
}

// podGroup is the job's gang: every pod of the attempt, all or nothing.
func podGroup(name, namespace string, members int32) *schedv1alpha1.PodGroup {
	return &schedv1alpha1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec:       schedv1alpha1.PodGroupSpec{MinMember: members},
	}
}

// applyFlavor adds the flavor's node labels to the pod's node selector and
// its tolerations to the pod's, as Kueue's job integrations do.
func applyFlavor(spec *corev1.PodSpec, flavor queue.FlavorPlacement) {
	if len(flavor.NodeLabels) > 0 {
		selector := maps.Clone(spec.NodeSelector)
		if selector == nil {
			selector = map[string]string{}
		}
		maps.Copy(selector, flavor.NodeLabels)
		spec.NodeSelector = selector
	}
	spec.Tolerations = append(slices.Clone(spec.Tolerations), flavor.Tolerations...)
}
