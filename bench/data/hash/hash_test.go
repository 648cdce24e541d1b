// Package hash compares the content hashes the data package could use for
// end-to-end checks on this machine (not part of CI):
//
//	go test -run '^$' -bench . ./bench/data/hash/
package hash

import (
	"crypto/md5"
	"crypto/sha256"
	"hash/crc32"
	"testing"

	"golang.org/x/crypto/blake2b"
)

var buf = make([]byte, 1<<20)

func BenchmarkSHA256(b *testing.B) {
	b.SetBytes(int64(len(buf)))
	h := sha256.New()
	for b.Loop() {
		h.Write(buf)
	}
}

func BenchmarkBLAKE2b256(b *testing.B) {
	b.SetBytes(int64(len(buf)))
	h, _ := blake2b.New256(nil)
	for b.Loop() {
		h.Write(buf)
	}
}

func BenchmarkMD5(b *testing.B) {
	b.SetBytes(int64(len(buf)))
	h := md5.New()
	for b.Loop() {
		h.Write(buf)
	}
}

func BenchmarkCRC32C(b *testing.B) {
	b.SetBytes(int64(len(buf)))
	t := crc32.MakeTable(crc32.Castagnoli)
	var c uint32
	for b.Loop() {
		c = crc32.Update(c, t, buf)
	}
	_ = c
}
