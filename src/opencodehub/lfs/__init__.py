"""Git LFS server: the batch API, the basic transfer adapter, the locking API, and the tokens
`git-lfs-authenticate` hands out over SSH. See `lfs.service` for the rules."""
