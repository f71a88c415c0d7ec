package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TrainingJob is a distributed training run (torchrun) across nodes, run
// as one gang under a Kueue LocalQueue. The launcher wires the rendezvous,
// creates the PodGroup and pods once Kueue admits the job, and restarts the
// whole gang when a member fails, up to backoffLimit.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=tj
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Queue",type=string,JSONPath=`.spec.queueName`
// +kubebuilder:printcolumn:name="Nodes",type=integer,JSONPath=`.spec.nodes.min`
// +kubebuilder:printcolumn:name="GPUs/node",type=integer,JSONPath=`.spec.gpusPerNode`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TrainingJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TrainingJobSpec   `json:"spec"`
	Status TrainingJobStatus `json:"status,omitempty"`
}

// TrainingJobSpec is what a team asks for.
type TrainingJobSpec struct {
	// QueueName is the Kueue LocalQueue, in the job's namespace, that
	// admits the job.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	QueueName string `json:"queueName"`

	// Image runs on every worker.
	// +kubebuilder:validation:MinLength=1
	Image string `json:"image"`
	// Command and Args are the worker's entrypoint, wrapped by torchrun's
	// environment (MASTER_ADDR, MASTER_PORT, NNODES, NODE_RANK,
	// NPROC_PER_NODE).
	// +optional
	Command []string `json:"command,omitempty"`
	// +optional
	Args []string `json:"args,omitempty"`

	// Nodes is how many worker nodes the job runs on: exactly Min, or, for
	// an elastic run, from Min up to Max.
	Nodes NodeRange `json:"nodes"`
	// GPUsPerNode is the GPUs of each worker (one torchrun process each).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	GPUsPerNode int32 `json:"gpusPerNode"`

	// Coordinator, if set, adds a role without GPUs (a rendezvous or
	// parameter server) to the gang.
	// +optional
	Coordinator *CoordinatorSpec `json:"coordinator,omitempty"`

	// Resources are each worker's CPU and memory; GPUs come from
	// GPUsPerNode.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
	// Env, Volumes and VolumeMounts pass through to every worker
	// (checkpoint storage: a PVC, S3 credentials from a Secret).
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`
	// +optional
	Volumes []corev1.Volume `json:"volumes,omitempty"`
	// +optional
	VolumeMounts []corev1.VolumeMount `json:"volumeMounts,omitempty"`

	// NodeSelector constrains every pod's node; Kueue's choice of
	// ResourceFlavor adds the flavor's node labels to it.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// PodAnnotations are set on every pod, e.g. tessera.dev/gpu-locality
	// or tessera.dev/gpu-models.
	// +optional
	PodAnnotations map[string]string `json:"podAnnotations,omitempty"`

	// PriorityClassName is the pods' and the Kueue Workload's priority.
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`
	// CheckpointGracePeriodSeconds is every pod's
	// terminationGracePeriodSeconds: how long a worker has, from SIGTERM,
	// to write a checkpoint when its gang is restarted, preempted by Kueue
	// or cancelled. The next attempt starts only once every pod is gone.
	// Unset, pods get Kubernetes' default (30 s).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=86400
	// +optional
	CheckpointGracePeriodSeconds *int64 `json:"checkpointGracePeriodSeconds,omitempty"`
	// BackoffLimit is how many times the whole gang is restarted after a
	// member fails before the job is Failed.
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	BackoffLimit *int32 `json:"backoffLimit,omitempty"`
}

// NodeRange is a number of nodes, fixed or elastic.
//
// +kubebuilder:validation:XValidation:rule="!has(self.max) || self.max >= self.min",message="max must be at least min",fieldPath=".max"
type NodeRange struct {
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	Min int32 `json:"min"`
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	// +optional
	Max *int32 `json:"max,omitempty"`
}

// CoordinatorSpec is a gang role without GPUs.
type CoordinatorSpec struct {
	// Image defaults to the workers' image.
	// +optional
	Image string `json:"image,omitempty"`
	// +optional
	Command []string `json:"command,omitempty"`
	// +optional
	Args []string `json:"args,omitempty"`
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
}

// TrainingJobPhase is where a job is in its life.
// +kubebuilder:validation:Enum=Queued;Admitted;Running;Restarting;Succeeded;Failed
type TrainingJobPhase string

// TrainingJobStatus is what the launcher observes.
type TrainingJobStatus struct {
	// +optional
	Phase TrainingJobPhase `json:"phase,omitempty"`
	// Conditions: Queued, Admitted, Running, Restarting, Succeeded, Failed,
	// each with a reason and a message that explains a wait.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Restarts counts whole-gang restarts.
	// +optional
	Restarts int32 `json:"restarts,omitempty"`
}

// TrainingJobList is a list of TrainingJobs.
//
// +kubebuilder:object:root=true
type TrainingJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TrainingJob `json:"items"`
}
