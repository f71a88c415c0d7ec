package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ServingGroup is a set of vLLM replicas behind one Service, each replica
// one gang of tensorParallelSize × pipelineParallelSize GPUs (a leader and
// workers when it spans nodes). The launcher makes each replica a Kueue
// Workload of the group's LocalQueue and creates its pods once admitted; the scale subresource lets HPA or KEDA drive
// the replica count.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=sg
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:printcolumn:name="Model",type=string,JSONPath=`.spec.model`
// +kubebuilder:printcolumn:name="TP",type=integer,JSONPath=`.spec.tensorParallelSize`
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.spec.replicas`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyReplicas`
type ServingGroup struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ServingGroupSpec   `json:"spec"`
	Status ServingGroupStatus `json:"status,omitempty"`
}

// ServingGroupSpec is what a team asks for.
//
// +kubebuilder:validation:XValidation:rule="self.tensorParallelSize * self.pipelineParallelSize <= self.gpusPerNode || (self.tensorParallelSize * self.pipelineParallelSize) % self.gpusPerNode == 0",message="a replica's GPUs (tensorParallelSize × pipelineParallelSize) must fit one node or fill whole nodes",fieldPath=".tensorParallelSize"
type ServingGroupSpec struct {
	// QueueName is the Kueue LocalQueue, in the group's namespace, that
	// admits its replicas.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	QueueName string `json:"queueName"`
	// Model is what vLLM serves (a Hugging Face id or a path).
	// +kubebuilder:validation:MinLength=1
	Model string `json:"model"`
	// Image is the vLLM image.
	// +kubebuilder:default="vllm/vllm-openai:v0.11.0"
	// +optional
	Image string `json:"image,omitempty"`
	// Args are extra vLLM arguments.
	// +optional
	Args []string `json:"args,omitempty"`

	// TensorParallelSize is the GPUs one model shard spans.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	TensorParallelSize int32 `json:"tensorParallelSize"`
	// PipelineParallelSize is the number of pipeline stages.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=16
	// +optional
	PipelineParallelSize int32 `json:"pipelineParallelSize,omitempty"`
	// GPUsPerNode is how many GPUs of a node one replica may use; a replica
	// needing more spans nodes.
	// +kubebuilder:default=8
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	// +optional
	GPUsPerNode int32 `json:"gpusPerNode,omitempty"`

	// Replicas is the number of replicas.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	Replicas int32 `json:"replicas"`
	// Port is where vLLM serves its OpenAI-compatible API.
	// +kubebuilder:default=8000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`
	// NodeSelector constrains every replica pod's node (e.g. a GPU
	// product); Kueue's choice of ResourceFlavor adds the flavor's node
	// labels to it.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// PriorityClassName is the replicas' priority.
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`
}

// ServingGroupStatus is what the launcher observes.
type ServingGroupStatus struct {
	// Replicas are the replicas created.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`
	// ReadyReplicas pass vLLM's /health.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`
	// Selector selects the group's pods, for the scale subresource.
	// +optional
	Selector string `json:"selector,omitempty"`
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ReplicaStatuses are the replicas that have restarted: how often, and
	// while one backs off, why and when it is retried.
	// +listType=map
	// +listMapKey=index
	// +optional
	ReplicaStatuses []ServingReplicaStatus `json:"replicaStatuses,omitempty"`
}

// ServingReplicaStatus is one replica's restart history.
type ServingReplicaStatus struct {
	// Index is the replica's index.
	Index int32 `json:"index"`
	// Restarts counts the replica's whole-gang restarts after a pod ended.
	// +optional
	Restarts int32 `json:"restarts,omitempty"`
	// Failures counts the restarts since the replica last ran for the
	// backoff reset time (10 min); the backoff doubles with each.
	// +optional
	Failures int32 `json:"failures,omitempty"`
	// LastFailedPod is the UID of the pod whose end was counted last (each
	// end counts once).
	// +optional
	LastFailedPod string `json:"lastFailedPod,omitempty"`
	// RetryAfter is when the replica's pods are, or were last, created
	// again after a restart.
	// +optional
	RetryAfter *metav1.Time `json:"retryAfter,omitempty"`
	// Message says why the replica last restarted.
	// +optional
	Message string `json:"message,omitempty"`
}

// ServingGroupList is a list of ServingGroups.
//
// +kubebuilder:object:root=true
type ServingGroupList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServingGroup `json:"items"`
}
