package agent

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/go-git/go-billy/v5/memfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
)

func mustTrust(t *testing.T, keys ...string) TrustedKeys {
	t.Helper()
	tk, err := ParseTrustedKeys(keys)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func commitIn(t *testing.T, repoDir, hash string) *object.Commit {
	t.Helper()
	r, err := git.PlainOpen(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.CommitObject(plumbing.NewHash(hash))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVerifyCommit_SSH(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "roles"), 0o755)
	os.WriteFile(filepath.Join(src, "main.hcl"), []byte("cluster \"demo\" {}\n"), 0o644)
	os.WriteFile(filepath.Join(src, "roles", "web.hcl"), []byte("# web\n"), 0o644)
	key, err := GenerateSigningKey(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := GenerateSigningKey(filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "repo.git")
	signed, err := Publish(t.Context(), src, repo, key, "signed")
	if err != nil {
		t.Fatal(err)
	}
	c := commitIn(t, repo, signed)
	if _, err := VerifyCommit(c, mustTrust(t, key.PublicKey())); err != nil {
		t.Errorf("signed commit: %v", err)
	}
	if _, err := VerifyCommit(c, mustTrust(t, other.PublicKey())); !errors.Is(err, ErrUntrusted) {
		t.Errorf("other key: err = %v, want ErrUntrusted", err)
	}
	// Tampering with the signed content breaks the signature.
	forged := *c
	forged.Message = "something else\n"
	if _, err := VerifyCommit(&forged, mustTrust(t, key.PublicKey())); !errors.Is(err, ErrBadSig) {
		t.Errorf("tampered commit: err = %v, want ErrBadSig", err)
	}
	// An unchanged tree makes no new commit.
	again, err := Publish(t.Context(), src, repo, key, "again")
	if err != nil || again != signed {
		t.Errorf("republish = %s, %v; want %s", again, err, signed)
	}
	os.WriteFile(filepath.Join(src, "main.hcl"), []byte("cluster \"demo2\" {}\n"), 0o644)
	unsigned, err := Publish(t.Context(), src, repo, nil, "unsigned")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyCommit(commitIn(t, repo, unsigned), mustTrust(t, key.PublicKey())); !errors.Is(err, ErrUnsigned) {
		t.Errorf("unsigned: err = %v, want ErrUnsigned", err)
	}
}

// TestVerifyCommit_GitInterop checks both directions against real git and
// ssh-keygen: git verifies what Publish signs, and VerifyCommit accepts a
// commit made by `git commit -S` with gpg.format=ssh.
func TestVerifyCommit_GitInterop(t *testing.T) {
	gitBin := requireGit(t)
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed: skipping git SSH-signing interop")
	}
	dir := t.TempDir()
	run := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command(gitBin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}

	// 1. git verifies a commit signed by Publish.
	key, err := GenerateSigningKey(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "main.hcl"), []byte("cluster \"demo\" {}\n"), 0o644)
	os.WriteFile(filepath.Join(src, "run.sh"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("main.hcl", filepath.Join(src, "link.hcl"))
	repo := filepath.Join(dir, "repo.git")
	h, err := Publish(t.Context(), src, repo, key, "from hactl")
	if err != nil {
		t.Fatal(err)
	}
	allowed := filepath.Join(dir, "allowed_signers")
	os.WriteFile(allowed, []byte("hactl@localhost namespaces=\"git\" "+key.PublicKey()+"\n"), 0o644)
	out := run(repo, "-c", "gpg.ssh.allowedSignersFile="+allowed, "verify-commit", "-v", h)
	if !strings.Contains(out, "Good \"git\" signature") {
		t.Errorf("git verify-commit: %s", out)
	}
	// git agrees with the tree we wrote (fsck would flag bad ordering/modes).
	run(repo, "fsck", "--strict")
	if got := run(repo, "ls-tree", h); !strings.Contains(got, "100755 blob") || !strings.Contains(got, "120000 blob") {
		t.Errorf("ls-tree lost the executable bit or the symlink:\n%s", got)
	}

	// 2. A commit made by git + ssh-keygen verifies with VerifyCommit.
	keyPath := filepath.Join(dir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", keyPath).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, _ := os.ReadFile(keyPath + ".pub")
	work := filepath.Join(dir, "work")
	os.MkdirAll(work, 0o755)
	run(work, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(work, "main.hcl"), []byte("cluster \"demo\" {}\n"), 0o644)
	run(work, "add", ".")
	run(work, "-c", "user.name=op", "-c", "user.email=op@example.com", "-c", "gpg.format=ssh",
		"-c", "user.signingkey="+keyPath, "commit", "-q", "-S", "-m", "signed by git")
	gh := run(work, "rev-parse", "HEAD")
	c := commitIn(t, work, gh)
	signer, err := VerifyCommit(c, mustTrust(t, string(pub)))
	if err != nil {
		t.Fatalf("git-signed commit: %v", err)
	}
	if !strings.HasPrefix(signer, "SHA256:") {
		t.Errorf("signer = %q, want an SSH fingerprint", signer)
	}
	if _, err := VerifyCommit(c, mustTrust(t, key.PublicKey())); !errors.Is(err, ErrUntrusted) {
		t.Errorf("git-signed commit with another trusted key: %v, want ErrUntrusted", err)
	}
}

func TestVerifyCommit_OpenPGP(t *testing.T) {
	ent, err := openpgp.NewEntity("op", "", "op@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := openpgp.NewEntity("x", "", "x@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	armored := func(e *openpgp.Entity) string {
		var b strings.Builder
		w, err := armor.Encode(&b, openpgp.PublicKeyType, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Serialize(w); err != nil {
			t.Fatal(err)
		}
		w.Close()
		return b.String()
	}
	fs := memfs.New()
	r, err := git.Init(memory.NewStorage(), fs)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := fs.Create("main.hcl")
	f.Write([]byte("cluster \"demo\" {}\n"))
	f.Close()
	w, _ := r.Worktree()
	w.Add("main.hcl")
	sig := &object.Signature{Name: "op", Email: "op@example.com", When: time.Now()}
	h, err := w.Commit("pgp signed", &git.CommitOptions{Author: sig, SignKey: ent})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := r.CommitObject(h)
	got, err := VerifyCommit(c, mustTrust(t, armored(ent)))
	if err != nil || !strings.HasPrefix(got, "openpgp:") {
		t.Errorf("pgp-signed commit: %q, %v", got, err)
	}
	if _, err := VerifyCommit(c, mustTrust(t, armored(stranger))); !errors.Is(err, ErrUntrusted) {
		t.Errorf("stranger key: %v, want ErrUntrusted", err)
	}
	key, _ := GenerateSigningKey(filepath.Join(t.TempDir(), "k"))
	if _, err := VerifyCommit(c, mustTrust(t, key.PublicKey())); !errors.Is(err, ErrUntrusted) {
		t.Errorf("only ssh keys trusted: %v, want ErrUntrusted", err)
	}
}

func TestParseTrustedKeys_Errors(t *testing.T) {
	for _, bad := range []string{"", "ssh-ed25519 notbase64", "-----BEGIN PGP PUBLIC KEY BLOCK-----\ngarbage\n-----END PGP PUBLIC KEY BLOCK-----"} {
		if _, err := ParseTrustedKeys([]string{bad}); err == nil {
			t.Errorf("ParseTrustedKeys(%q) succeeded", bad)
		}
	}
}
