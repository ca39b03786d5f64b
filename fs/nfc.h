/*
 * nfc.h - one name, the spelling first written: laid over the operations
 * table (over the audit log), it gives every operation a date's file name
 * spelled as its image was first written, whichever Unicode spelling
 * (composed NFC, decomposed NFD) a client sends.
 */
#ifndef FS_NFC_H
#define FS_NFC_H

#include "fs/request.h"

/* The operations table ops, each name spelled as its image's first. */
const struct fuse_operations *fs_nfc_ops(const struct fuse_operations *ops);

#endif
