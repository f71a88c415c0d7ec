package launcher

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	configv1alpha1 "tessera.dev/tessera/apis/config/v1alpha1"
	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/podgpu"
	"tessera.dev/tessera/pkg/queue"
)

// ServingGroup roles, which are also each replica Workload's PodSet names.
const (
	RoleLeader        = "leader"
	RoleServingWorker = "workers"
)

// rayPort is the Ray head's port on a multi-node replica's leader.
const rayPort = 6379

// labelSpecHash, on a replica's Workload, is the hash of the group spec it
// was made from; a replica of an older spec is replaced, one at a time.
const labelSpecHash = "tessera.dev/spec-hash"

// ReplicaWorkloadName is the Kueue Workload of one serving replica.
func ReplicaWorkloadName(group string, replica int) string {
	return fmt.Sprintf("servinggroup-%s-%d", group, replica)
}

func replicaName(group string, replica int) string { return fmt.Sprintf("%s-%d", group, replica) }

// replicaShape is how a replica's GPUs split into pods: one pod when they
// fit one node, else whole nodes of gpusPerNode (a leader and workers).
func replicaShape(sg *tesserav1alpha1.ServingGroup) (pods, gpusPerPod int32) {
	gpus := sg.Spec.TensorParallelSize * max(sg.Spec.PipelineParallelSize, 1)
	perNode := max(sg.Spec.GPUsPerNode, 1)
	if gpus <= perNode {
		return 1, gpus
	}
	return gpus / perNode, perNode
}

// replicaHash hashes what a replica's Workload and pods are made from: the
// rendered PodSets (every pod template, node selector, priority class
// included), the LocalQueue and the priority class. Anything that changes
// them rolls the replica; a new spec field that reaches the pods is never
// left out, since the pods are rendered, not listed field by field.
func replicaHash(sg *tesserav1alpha1.ServingGroup, replica int) string {
	h := fnv.New64a()
	// API types of strings, numbers, maps and slices always encode (map
	// keys sorted), and an fnv hash never fails to write.
	_ = json.NewEncoder(h).Encode(struct {
		Queue, PriorityClass string
		PodSets              []kueue.PodSet
	}{sg.Spec.QueueName, sg.Spec.PriorityClassName, servingPodSets(sg, replica)})
	return strconv.FormatUint(h.Sum64(), 16)
}

func servingPodSets(sg *tesserav1alpha1.ServingGroup, replica int) []kueue.PodSet {
	pods, _ := replicaShape(sg)
	sets := []kueue.PodSet{{Name: RoleLeader, Count: 1, Template: servingTemplate(sg, replica, RoleLeader)}}
	if pods > 1 {
		sets = append(sets, kueue.PodSet{Name: RoleServingWorker, Count: pods - 1, Template: servingTemplate(sg, replica, RoleServingWorker)})
	}
	return sets
}

// servingTemplate is a replica pod of role: vllm serve on a one-node
// replica; on a multi-node one, the leader starts the Ray head and then
// vllm serve over Ray, and workers join the head (vLLM's multi-node
// recipe). Every pod's GPUs sit in one NVLink island.
func servingTemplate(sg *tesserav1alpha1.ServingGroup, replica int, role string) corev1.PodTemplateSpec {
	pods, gpusPerPod := replicaShape(sg)
	port := apiPort(sg)
	leader := fmt.Sprintf("%s-leader.%s-ray.%s.svc", replicaName(sg.Name, replica), sg.Name, sg.Namespace)
	serve := append([]string{"vllm", "serve", sg.Spec.Model,
		"--tensor-parallel-size", strconv.Itoa(int(sg.Spec.TensorParallelSize)),
		"--pipeline-parallel-size", strconv.Itoa(int(max(sg.Spec.PipelineParallelSize, 1))),
		"--port", strconv.Itoa(int(port))}, sg.Spec.Args...)
	container := corev1.Container{Name: "vllm", Image: sg.Spec.Image}
	switch {
	case pods == 1:
		container.Command = serve
	case role == RoleLeader:
		serve = append(serve, "--distributed-executor-backend", "ray")
		container.Command = []string{"bash", "-c", fmt.Sprintf("ray start --head --port=%d && exec %s", rayPort, strings.Join(serve, " "))}
	default:
		container.Command = []string{"ray", "start", "--address=" + fmt.Sprintf("%s:%d", leader, rayPort), "--block"}
	}
	if role == RoleLeader {
		container.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: port}}
		container.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt32(port)}}}
	}
	gpus := *resource.NewQuantity(int64(gpusPerPod), resource.DecimalSI)
	container.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{podgpu.ResourceGPU: gpus},
		Limits:   corev1.ResourceList{podgpu.ResourceGPU: gpus},
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
			tesserav1alpha1.AnnotationGPULocality: string(configv1alpha1.GPULocalityNVLinkIsland),
		}},
		Spec: corev1.PodSpec{
			SchedulerName:     ServingSchedulerName,
			PriorityClassName: sg.Spec.PriorityClassName,
			NodeSelector:      sg.Spec.NodeSelector,
			RestartPolicy:     corev1.RestartPolicyNever,
			Containers:        []corev1.Container{container},
		},
	}
}

// servingPod is the index-th pod of a replica's role, with the flavor's
// node labels and tolerations applied.
func servingPod(sg *tesserav1alpha1.ServingGroup, replica int, role string, index int, flavor queue.FlavorPlacement) *corev1.Pod {
	t := servingTemplate(sg, replica, role)
	name := replicaName(sg.Name, replica) + "-leader"
	if role == RoleServingWorker {
		name = fmt.Sprintf("%s-worker-%d", replicaName(sg.Name, replica), index)
	}
	t.Spec.Hostname, t.Spec.Subdomain = name, sg.Name+"-ray"
	applyFlavor(&t.Spec, flavor)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   sg.Namespace,
			Annotations: t.Annotations,
			Labels: map[string]string{
				LabelServingGroup:           sg.Name,
				LabelReplica:                strconv.Itoa(replica),
				LabelRole:                   role,
				queue.LabelWorkload:         ReplicaWorkloadName(sg.Name, replica),
				queue.LabelPodSet:           role,
				schedv1alpha1.PodGroupLabel: replicaName(sg.Name, replica),
			},
		},
		Spec: t.Spec,
	}
	if role == RoleLeader {
		pod.Labels[LabelServing] = "true"
	}
	return pod
}

// servingServices are the group's API Service (port 8000 on the replicas'
// leaders) and the headless Service that names pods for Ray.
func servingServices(sg *tesserav1alpha1.ServingGroup) []*corev1.Service {
	port := apiPort(sg)
	labels := map[string]string{LabelServingGroup: sg.Name}
	return []*corev1.Service{
		{
			ObjectMeta: metav1.ObjectMeta{Name: sg.Name, Namespace: sg.Namespace, Labels: labels},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{LabelServingGroup: sg.Name, LabelRole: RoleLeader, LabelServing: "true"},
				Ports:    []corev1.ServicePort{{Name: "http", Port: port, TargetPort: intstr.FromInt32(port)}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: sg.Name + "-ray", Namespace: sg.Namespace, Labels: labels},
			Spec: corev1.ServiceSpec{
				ClusterIP:                corev1.ClusterIPNone,
				PublishNotReadyAddresses: true,
				Selector:                 labels,
				Ports:                    []corev1.ServicePort{{Name: "ray", Port: rayPort, TargetPort: intstr.FromInt32(rayPort)}},
			},
		},
	}
}

// apiPort is where vLLM serves (the CRD defaults it to 8000).
func apiPort(sg *tesserav1alpha1.ServingGroup) int32 {
	if sg.Spec.Port == 0 {
		return 8000
	}
	return sg.Spec.Port
}
