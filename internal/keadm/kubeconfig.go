package keadm

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

const flagKubeConfig = "kube-config"

func addKubeConfigFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVar(path, flagKubeConfig, "",
		"kubeconfig of the cluster cloudcore runs in (default $KUBECONFIG, else ~/.kube/config)")
}

// restConfig loads the client configuration from path, or from the usual
// places ($KUBECONFIG, ~/.kube/config, in-cluster) when path is empty.
func restConfig(path string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	switch {
	case err == nil:
		return cfg, nil
	case path != "":
		return nil, fmt.Errorf("--%s %s: %w", flagKubeConfig, path, err)
	case clientcmd.IsEmptyConfig(err):
		return nil, fmt.Errorf("no kubeconfig found in $KUBECONFIG or ~/.kube/config: pass --%s", flagKubeConfig)
	default:
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
}
