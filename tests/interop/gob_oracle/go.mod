module lumerap2p.test/goboracle

go 1.21
