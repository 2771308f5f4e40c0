package replica

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/zeebo/blake3"
)

// Root is the meta-space folder that holds the index backups.
const Root = "index"

// object names one backup object.
type object struct {
	FSID, Gen string
	Seq       uint64
	Time      time.Time // the point in time the object brings the index to
	Sum       uint64    // first 64 bits of the BLAKE3 of its bytes
}

func (o object) name() string {
	return fmt.Sprintf("%s/%s/%s/%016x-%013d-%016x.ltx", Root, o.FSID, o.Gen, o.Seq, o.Time.UnixMilli(), o.Sum)
}

// fsidPrefix is the folder of one filesystem's generations.
func fsidPrefix(fsid string) string { return Root + "/" + fsid + "/" }

// genPrefix is the folder of one generation's objects.
func genPrefix(fsid, gen string) string { return fsidPrefix(fsid) + gen + "/" }

// parseObject parses an object name; ok is false for anything else (a
// foreign or partial file is ignored, never guessed at).
func parseObject(name string) (o object, ok bool) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != Root || !validFSID(parts[1]) || !validGen(parts[2]) {
		return o, false
	}
	base, found := strings.CutSuffix(parts[3], ".ltx")
	if !found {
		return o, false
	}
	f := strings.Split(base, "-")
	if len(f) != 3 || len(f[0]) != 16 || len(f[1]) != 13 || len(f[2]) != 16 {
		return o, false
	}
	seq, err1 := strconv.ParseUint(f[0], 16, 64)
	ms, err2 := strconv.ParseInt(f[1], 10, 64)
	sum, err3 := strconv.ParseUint(f[2], 16, 64)
	if err1 != nil || err2 != nil || err3 != nil || seq == 0 {
		return o, false
	}
	return object{FSID: parts[1], Gen: parts[2], Seq: seq, Time: time.UnixMilli(ms), Sum: sum}, true
}

// sum64 is the first 64 bits of the BLAKE3 of b.
func sum64(b []byte) uint64 {
	h := blake3.Sum256(b)
	return binary.BigEndian.Uint64(h[:8])
}

// newGen names a generation started at t: sortable by time, unique by a
// random suffix.
func newGen(t time.Time) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return t.UTC().Format("20060102T150405.000Z") + "-" + hex.EncodeToString(r[:])
}

// genTime is when a generation started, from its name.
func genTime(gen string) time.Time {
	t, _ := time.Parse("20060102T150405.000Z", strings.SplitN(gen, "-", 2)[0])
	return t
}

func validGen(s string) bool {
	ts, rnd, ok := strings.Cut(s, "-")
	if !ok || len(rnd) != 8 {
		return false
	}
	if _, err := hex.DecodeString(rnd); err != nil {
		return false
	}
	_, err := time.Parse("20060102T150405.000Z", ts)
	return err == nil
}

func validFSID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
