package keadm

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeedge-go/kubeedge/internal/cloud/certs"
	"github.com/kubeedge-go/kubeedge/internal/cloud/stream"
	"github.com/kubeedge-go/kubeedge/internal/pki"
)

// newStreamCertsCommand issues the client certificate the kube-apiserver
// (or metrics-server) uses with CloudStream and edge kubelets, from the CA
// cloudcore keeps in its casecret, and writes the egress selector
// configuration.
func newStreamCertsCommand(d Deps) *cobra.Command {
	var kubeConfig, namespace string
	var opts stream.ClientFilesOptions
	cmd := &cobra.Command{
		Use:   "streamcerts",
		Short: "Write the kube-apiserver's CloudStream client certificate and egress selector configuration",
		Long: "streamcerts issues a client certificate of the KubeEdge CA (secret " + certs.DefaultNamespace + "/" + certs.CASecret + ")\n" +
			"in group " + pki.StreamClientsGroup + " and writes it with its key and the CA to --out. With --proxy-url it also\n" +
			"writes the EgressSelectorConfiguration that sends the apiserver's cluster traffic to CloudStream.\n" +
			"Then start kube-apiserver with the printed flags: kubectl logs/exec/attach/port-forward and\n" +
			"metrics then reach edge nodes through CloudStream, with no iptables rule.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Dir == "" {
				return fmt.Errorf("--out is required")
			}
			cfg, err := restConfig(kubeConfig)
			if err != nil {
				return err
			}
			client, err := d.NewClient(cfg)
			if err != nil {
				return fmt.Errorf("kubernetes client: %w", err)
			}
			s, err := client.CoreV1().Secrets(namespace).Get(cmd.Context(), certs.CASecret, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return fmt.Errorf("CA secret %s/%s not found: is cloudcore running?", namespace, certs.CASecret)
			}
			if err != nil {
				return fmt.Errorf("read CA secret %s/%s: %w", namespace, certs.CASecret, err)
			}
			ca, err := pki.LoadCA(s.Data[certs.CACertKey], s.Data[certs.CAKeyKey])
			if err != nil {
				return fmt.Errorf("CA secret %s/%s: %w", namespace, certs.CASecret, err)
			}
			files, err := stream.WriteClientFiles(ca, opts, d.Clock.Now())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(d.Stdout, "wrote %s, %s, %s\nkube-apiserver flags:\n  %s\n",
				files.CAFile, files.CertFile, files.KeyFile, strings.Join(stream.APIServerFlags(files), " \\\n  "))
			return err
		},
	}
	addKubeConfigFlag(cmd, &kubeConfig)
	cmd.Flags().StringVar(&namespace, "namespace", certs.DefaultNamespace, "namespace cloudcore keeps its secrets in")
	cmd.Flags().StringVar(&opts.Dir, "out", "", "directory to write the files to (created if missing)")
	cmd.Flags().StringVar(&opts.ProxyURL, "proxy-url", "", "CloudStream's proxy address as the apiserver reaches it, https://HOST:10003 (HOST must be in cloudcore's certificate); writes "+stream.EgressConfigFileName)
	cmd.Flags().StringVar(&opts.CommonName, "common-name", stream.DefaultClientCommonName, "user name in the certificate (e.g. metrics-server)")
	cmd.Flags().DurationVar(&opts.Validity, "validity", 0, "certificate lifetime (default 1 year)")
	return cmd
}
