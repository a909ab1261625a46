package keadm

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

func newCRDsCommand(d Deps) *cobra.Command {
	crds := &cobra.Command{
		Use:   "crds",
		Short: "Manage the CustomResourceDefinitions cloudcore uses",
		Args:  cobra.NoArgs,
	}
	var kubeConfig string
	install := &cobra.Command{
		Use:   "install",
		Short: "Install or update the CRDs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if d.InstallCRDs == nil {
				return errors.New("this keadm was built without CRD installation")
			}
			cfg, err := restConfig(kubeConfig)
			if err != nil {
				return err
			}
			if err := d.InstallCRDs(cmd.Context(), cfg); err != nil {
				return fmt.Errorf("install CRDs: %w", err)
			}
			_, err = fmt.Fprintln(d.Stdout, "CRDs installed")
			return err
		},
	}
	addKubeConfigFlag(install, &kubeConfig)
	crds.AddCommand(install)
	return crds
}
