module github.com/dualstore/dualstore/integration/tools/desync

go 1.26

require github.com/folbricht/desync v0.9.6
