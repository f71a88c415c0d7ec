package cluster

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// CreateNamespace creates ns and its default service account, which a
// controller-manager would create on a real cluster; without it the
// ServiceAccount admission plugin rejects every pod.
func CreateNamespace(ctx context.Context, client kubernetes.Interface, ns *corev1.Namespace) (*corev1.Namespace, error) {
	ns, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating namespace: %w", err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "default"}}
	if _, err := client.CoreV1().ServiceAccounts(ns.Name).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating default service account in %s: %w", ns.Name, err)
	}
	return ns, nil
}
