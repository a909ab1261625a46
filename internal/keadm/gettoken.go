package keadm

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeedge-go/kubeedge/internal/cloud/certs"
)

func newGetTokenCommand(d Deps) *cobra.Command {
	var kubeConfig, namespace string
	cmd := &cobra.Command{
		Use:   "gettoken",
		Short: "Print the token edge nodes join with",
		Long: "gettoken prints the current join token, which cloudcore keeps in secret " +
			certs.DefaultNamespace + "/" + certs.TokenSecret + " (key " + certs.TokenKey + ").",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := restConfig(kubeConfig)
			if err != nil {
				return err
			}
			client, err := d.NewClient(cfg)
			if err != nil {
				return fmt.Errorf("kubernetes client: %w", err)
			}
			s, err := client.CoreV1().Secrets(namespace).Get(cmd.Context(), certs.TokenSecret, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return fmt.Errorf("token secret %s/%s not found: is cloudcore running?", namespace, certs.TokenSecret)
			}
			if err != nil {
				return fmt.Errorf("read token secret %s/%s: %w", namespace, certs.TokenSecret, err)
			}
			tok := strings.TrimSpace(string(s.Data[certs.TokenKey]))
			if tok == "" {
				return fmt.Errorf("token secret %s/%s has no %q key: is cloudcore running?", namespace, certs.TokenSecret, certs.TokenKey)
			}
			_, err = fmt.Fprintln(d.Stdout, tok)
			return err
		},
	}
	addKubeConfigFlag(cmd, &kubeConfig)
	cmd.Flags().StringVar(&namespace, "namespace", certs.DefaultNamespace, "namespace cloudcore keeps its secrets in")
	return cmd
}
