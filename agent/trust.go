package agent

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

// SSHSigNamespace is the sshsig namespace git uses for commit signatures.
const SSHSigNamespace = "git"

const (
	sshSigPrefix = "-----BEGIN SSH SIGNATURE-----"
	pgpKeyPrefix = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
)

// Errors that classify a refused commit; test with errors.Is.
var (
	ErrUnsigned  = errors.New("commit is not signed")
	ErrUntrusted = errors.New("commit signature is not from a trusted key")
	ErrBadSig    = errors.New("commit signature does not verify")
)

// TrustedKeys is the parsed form of Config.TrustedKeys.
type TrustedKeys struct {
	SSH []ssh.PublicKey
	// PGP is the armored OpenPGP keyring (all armored keys concatenated),
	// "" when none.
	PGP string
}

// ParseTrustedKeys parses authorized_keys lines and armored OpenPGP blocks.
// One entry may hold several authorized_keys lines; comments and blank lines
// are skipped.
func ParseTrustedKeys(entries []string) (TrustedKeys, error) {
	var tk TrustedKeys
	var pgp []string
	for i, e := range entries {
		if strings.Contains(e, pgpKeyPrefix) {
			if _, err := openpgp.ReadArmoredKeyRing(strings.NewReader(e)); err != nil {
				return TrustedKeys{}, fmt.Errorf("trusted_keys[%d]: openpgp key: %w", i, err)
			}
			pgp = append(pgp, e)
			continue
		}
		rest := []byte(e)
		n := 0
		for len(bytes.TrimSpace(rest)) > 0 {
			pk, _, _, r, err := ssh.ParseAuthorizedKey(rest)
			if err != nil {
				return TrustedKeys{}, fmt.Errorf("trusted_keys[%d]: ssh key: %w", i, err)
			}
			tk.SSH = append(tk.SSH, pk)
			rest = r
			n++
		}
		if n == 0 {
			return TrustedKeys{}, fmt.Errorf("trusted_keys[%d]: no key found", i)
		}
	}
	tk.PGP = strings.Join(pgp, "\n")
	return tk, nil
}

// VerifyCommit checks c's signature against the trusted keys and returns a
// short description of the key that signed it (an SSH fingerprint or an
// OpenPGP key id). The error wraps ErrUnsigned, ErrUntrusted or ErrBadSig.
//
// SSH signatures are git's gpg.format=ssh: the gpgsig header holds an armored
// sshsig over the commit encoded without its signature, namespace "git".
func VerifyCommit(c *object.Commit, tk TrustedKeys) (string, error) {
	sig := strings.TrimSpace(c.PGPSignature)
	if sig == "" {
		return "", fmt.Errorf("commit %s: %w", c.Hash, ErrUnsigned)
	}
	if strings.HasPrefix(sig, sshSigPrefix) {
		return verifySSH(c, sig, tk)
	}
	if tk.PGP == "" {
		return "", fmt.Errorf("commit %s has an OpenPGP signature and no OpenPGP key is trusted: %w", c.Hash, ErrUntrusted)
	}
	ent, err := c.Verify(tk.PGP)
	if err != nil {
		if errors.Is(err, pgperrors.ErrUnknownIssuer) {
			return "", fmt.Errorf("commit %s: %w", c.Hash, ErrUntrusted)
		}
		return "", fmt.Errorf("commit %s: %w: %w", c.Hash, ErrBadSig, err)
	}
	return "openpgp:" + ent.PrimaryKey.KeyIdString(), nil
}

func verifySSH(c *object.Commit, armored string, tk TrustedKeys) (string, error) {
	sig, err := sshsig.Unarmor([]byte(armored))
	if err != nil {
		return "", fmt.Errorf("commit %s: parse ssh signature: %w: %w", c.Hash, ErrBadSig, err)
	}
	var key ssh.PublicKey
	for _, k := range tk.SSH {
		if bytes.Equal(k.Marshal(), sig.PublicKey.Marshal()) {
			key = k
			break
		}
	}
	if key == nil {
		return "", fmt.Errorf("commit %s signed by %s: %w", c.Hash, ssh.FingerprintSHA256(sig.PublicKey), ErrUntrusted)
	}
	payload, err := commitPayload(c)
	if err != nil {
		return "", fmt.Errorf("commit %s: %w", c.Hash, err)
	}
	if err := sshsig.Verify(bytes.NewReader(payload), sig, key, sig.HashAlgorithm, SSHSigNamespace); err != nil {
		return "", fmt.Errorf("commit %s: %w: %w", c.Hash, ErrBadSig, err)
	}
	return ssh.FingerprintSHA256(key), nil
}

// commitPayload is the commit encoded without its signature: the bytes git
// signs.
func commitPayload(c *object.Commit) ([]byte, error) {
	o := &plumbing.MemoryObject{}
	if err := c.EncodeWithoutSignature(o); err != nil {
		return nil, fmt.Errorf("encode commit payload: %w", err)
	}
	r, err := o.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// Signer signs commit payloads. It has the shape of go-git's Signer: Sign
// returns the armored signature to store in the commit's gpgsig header.
// Implementations must be safe for concurrent use.
type Signer interface {
	Sign(message io.Reader) ([]byte, error)
}

// SSHSigner signs with an SSH key in git's gpg.format=ssh form.
type SSHSigner struct {
	signer ssh.Signer
}

// PublicKey returns the authorized_keys line of the signing key, for
// Config.TrustedKeys.
func (s *SSHSigner) PublicKey() string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.signer.PublicKey())))
}

// Sign implements Signer: an armored sshsig, namespace "git", SHA-512.
func (s *SSHSigner) Sign(message io.Reader) ([]byte, error) {
	sig, err := sshsig.Sign(message, s.signer, sshsig.HashSHA512, SSHSigNamespace)
	if err != nil {
		return nil, fmt.Errorf("ssh sign: %w", err)
	}
	return sshsig.Armor(sig), nil
}

// NewSSHSigner wraps an ssh.Signer.
func NewSSHSigner(s ssh.Signer) *SSHSigner { return &SSHSigner{signer: s} }

// GenerateSigningKey creates an ed25519 key in OpenSSH format at path (mode
// 0600) and its public half at path+".pub", like ssh-keygen -t ed25519. It
// refuses to overwrite an existing key.
func GenerateSigningKey(path string) (*SSHSigner, error) {
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("signing key %s already exists", path)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "hactl signing key")
	if err != nil {
		return nil, fmt.Errorf("encode signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create key dir: %w", err)
	}
	if err := writeFileAtomic(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	spub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(spub))) + " hactl signing key\n"
	if err := writeFileAtomic(path+".pub", []byte(line), 0o644); err != nil {
		return nil, fmt.Errorf("write public key: %w", err)
	}
	return LoadSigningKey(path)
}

// LoadSigningKey reads an unencrypted OpenSSH private key (as written by
// GenerateSigningKey or ssh-keygen -N "").
func LoadSigningKey(path string) (*SSHSigner, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("parse signing key %s: %w", path, err)
	}
	return NewSSHSigner(s), nil
}
