package cluster

import (
	"fmt"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
)

// ImpersonatingKubeconfig writes a kubeconfig, named after name in the work
// dir, that acts as user (e.g. system:serviceaccount:ns:sa) through the
// admin's credentials: a component run with it has exactly user's RBAC, as
// it would in a cluster, without a token to mint.
func (c *Cluster) ImpersonatingKubeconfig(name, user string) (string, error) {
	config, err := clientcmd.LoadFromFile(c.KubeconfigPath)
	if err != nil {
		return "", fmt.Errorf("reading the admin kubeconfig: %w", err)
	}
	for _, auth := range config.AuthInfos {
		auth.Impersonate = user
	}
	path := filepath.Join(c.WorkDir, name+".kubeconfig")
	if err := clientcmd.WriteToFile(*config, path); err != nil {
		return "", err
	}
	return path, nil
}
