package keadm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
)

func fakeClient(objs ...runtime.Object) func(*rest.Config) (kubernetes.Interface, error) {
	return func(*rest.Config) (kubernetes.Interface, error) { return fake.NewClientset(objs...), nil }
}

func tokenSecret(ns string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tokensecret"}, Data: data}
}

func TestGetToken(t *testing.T) {
	kc := writeKubeconfig(t)
	_, tok := testToken(t)
	for _, tc := range []struct {
		name    string
		objs    []runtime.Object
		args    []string
		want    string
		wantErr string
	}{
		{name: "prints the token", objs: []runtime.Object{tokenSecret("kubeedge", map[string][]byte{"tokendata": []byte(tok)})}, want: tok + "\n"},
		{name: "other namespace", objs: []runtime.Object{tokenSecret("edge-system", map[string][]byte{"tokendata": []byte(tok)})},
			args: []string{"--namespace", "edge-system"}, want: tok + "\n"},
		{name: "no secret", wantErr: "token secret kubeedge/tokensecret not found: is cloudcore running?"},
		{name: "secret in another namespace", objs: []runtime.Object{tokenSecret("edge-system", map[string][]byte{"tokendata": []byte(tok)})},
			wantErr: "token secret kubeedge/tokensecret not found"},
		{name: "no key", objs: []runtime.Object{tokenSecret("kubeedge", map[string][]byte{"other": []byte("x")})},
			wantErr: `token secret kubeedge/tokensecret has no "tokendata" key`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t.Context(), Deps{NewClient: fakeClient(tc.objs...)}, append([]string{"gettoken", "--kube-config", kc}, tc.args...)...)
			if tc.wantErr != "" {
				r.mustErr(t, tc.wantErr)
				return
			}
			r.mustSucceed(t)
			if r.stdout != tc.want {
				t.Errorf("printed %q, want %q", r.stdout, tc.want)
			}
		})
	}
}

func TestGetTokenKubeconfigErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	run(t.Context(), Deps{NewClient: fakeClient()}, "gettoken", "--kube-config", missing).
		mustErr(t, "--kube-config "+missing, "no such file")

	t.Setenv("KUBECONFIG", "")
	t.Setenv("HOME", t.TempDir())
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	run(t.Context(), Deps{NewClient: fakeClient()}, "gettoken").
		mustErr(t, "no kubeconfig found in $KUBECONFIG or ~/.kube/config: pass --kube-config")

	// $KUBECONFIG is used when the flag is absent.
	t.Setenv("KUBECONFIG", writeKubeconfig(t))
	_, tok := testToken(t)
	r := run(t.Context(), Deps{NewClient: fakeClient(tokenSecret("kubeedge", map[string][]byte{"tokendata": []byte(tok)}))}, "gettoken")
	r.mustSucceed(t)
	if r.stdout != tok+"\n" {
		t.Errorf("printed %q", r.stdout)
	}
}

func TestCRDsInstall(t *testing.T) {
	kc := writeKubeconfig(t)
	var gotHost string
	install := func(_ context.Context, c *rest.Config) error {
		gotHost = c.Host
		return nil
	}
	r := run(t.Context(), Deps{InstallCRDs: install}, "crds", "install", "--kube-config", kc)
	r.mustSucceed(t)
	if gotHost != "https://cluster.example:6443" {
		t.Errorf("InstallCRDs got host %q, want the kubeconfig's", gotHost)
	}
	if r.stdout != "CRDs installed\n" {
		t.Errorf("printed %q", r.stdout)
	}

	fail := func(context.Context, *rest.Config) error { return errors.New("crd reliablesyncs not established") }
	run(t.Context(), Deps{InstallCRDs: fail}, "crds", "install", "--kube-config", kc).
		mustErr(t, "install CRDs: crd reliablesyncs not established")
	run(t.Context(), Deps{}, "crds", "install", "--kube-config", kc).
		mustErr(t, "this keadm was built without CRD installation")
}

func TestVersion(t *testing.T) {
	r := run(t.Context(), Deps{Version: "v1.2.3"}, "version")
	r.mustSucceed(t)
	if !strings.HasPrefix(r.stdout, "keadm version v1.2.3 (go") {
		t.Errorf("printed %q", r.stdout)
	}
}

func TestResetNeedsForceWithoutTerminal(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "edgecore.yaml")
	if err := os.WriteFile(cfgPath, []byte("kind: EdgeCore\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t.Context(), Deps{}, "reset", "--data-dir", dir, "-c", cfgPath).
		mustErr(t, "stdin is not a terminal, so pass --force to confirm")
	if !exists(cfgPath) {
		t.Error("reset without confirmation removed the configuration")
	}
}

func TestResetRefusesForeignPID(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "edgecore.yaml")
	pidFile := filepath.Join(dir, "edgecore.pid")
	// The test process itself stands for a process that reused the pid.
	if err := writePIDFile(pidFile, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	run(t.Context(), Deps{}, "reset", "--data-dir", dir, "-c", cfgPath, "--force").
		mustErr(t, "pid "+strconv.Itoa(os.Getpid())+" from "+pidFile, "not edgecore: not stopping it")
	if !exists(pidFile) {
		t.Error("pid file removed although the process was not stopped")
	}
}

func TestResetStalePIDAndUnreadableConfig(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "edgecore.yaml")
	// A pid that cannot exist: above the kernel's pid_max limit of 2^22.
	if err := writePIDFile(filepath.Join(dir, "edgecore.pid"), 1<<23); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, []byte("not: [valid"), 0o600); err != nil {
		t.Fatal(err)
	}
	certs := filepath.Join(dir, "certs", "server.crt")
	if err := os.MkdirAll(filepath.Dir(certs), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certs, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t.Context(), Deps{}, "reset", "--data-dir", dir, "-c", cfgPath, "--force")
	r.mustSucceed(t)
	if !strings.Contains(r.stdout, "edgecore (pid 8388608) is not running") {
		t.Errorf("output lacks the stale pid note:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "removing the default files for this --data-dir instead") {
		t.Errorf("stderr lacks the unreadable configuration note:\n%s", r.stderr)
	}
	for _, f := range []string{cfgPath, certs, filepath.Join(dir, "edgecore.pid"), filepath.Dir(certs)} {
		if exists(f) {
			t.Errorf("reset left %s", f)
		}
	}

	// Reset is idempotent.
	r = run(t.Context(), Deps{}, "reset", "--data-dir", dir, "-c", cfgPath, "--force")
	r.mustSucceed(t)
	if !strings.HasSuffix(r.stdout, "reset complete\n") {
		t.Errorf("second reset printed:\n%s", r.stdout)
	}
}

func TestResetUsesPathsFromConfig(t *testing.T) {
	dir := t.TempDir()
	_, tok := testToken(t)
	cfgPath := filepath.Join(dir, "edgecore.yaml")
	fb := &fakeBootstrap{}
	run(t.Context(), Deps{Bootstrap: fb.bootstrap}, "join", "-e", "127.0.0.1:10000", "-t", tok, "-i", "edge-1",
		"--data-dir", dir, "-c", cfgPath, "--prepare-only").mustSucceed(t)
	// The user moved the database and said so in the configuration.
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	moved := filepath.Join(t.TempDir(), "moved.db")
	b = []byte(strings.Replace(string(b), filepath.Join(dir, "edgecore.db"), moved, 1))
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(moved, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	run(t.Context(), Deps{}, "reset", "--data-dir", dir, "-c", cfgPath, "--force").mustSucceed(t)
	if exists(moved) {
		t.Error("reset left the database the configuration names")
	}
}
