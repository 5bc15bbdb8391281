/* Data-parallel training over several processes (docs/DISTRIBUTED.md): the rank / world-size environment a
 * launcher gives (torchrun's names), the rendezvous that hands NCCL's unique id from rank 0 to every other rank
 * over one TCP socket, and the one-machine launcher behind `modrwkv train --gpus N`. Plain POSIX C, in every
 * build (the CPU-only build uses none of it at run time; tests/test_dist.c checks it without a GPU). The NCCL
 * side is src/kernels/cuda/dist_nccl.h.
 *
 * Environment (read by mrw_dist_env_read):
 *   WORLD_SIZE    number of ranks; unset (or 1) = one process, nothing distributed
 *   RANK          this process's rank, 0 .. WORLD_SIZE-1 (global, across nodes)
 *   LOCAL_RANK    this process's index on its node = its GPU (default: RANK)
 *   MASTER_ADDR   host name or address of rank 0's node (default 127.0.0.1)
 *   MASTER_PORT   TCP port rank 0 listens on for the rendezvous (default 29500)
 *   MRW_DIST_PORT the rendezvous port instead of MASTER_PORT (under torchrun, whose own store holds MASTER_PORT)
 *   MRW_DIST_TIMEOUT  seconds a rank waits for the others at the rendezvous (default 300)
 *
 * Rendezvous protocol: rank 0 listens on MASTER_PORT (every interface) and answers WORLD_SIZE - 1 connections;
 * each other rank connects to MASTER_ADDR:MASTER_PORT (retrying until the timeout: rank 0 may start later),
 * sends "MRWD", its rank and the world size, and receives the id. A rank that cannot reach rank 0 in time, a
 * world size that differs, a rank seen twice or out of range each fail with a message that names the address. */
#ifndef MRW_TRAIN_DIST_H
#define MRW_TRAIN_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "modrwkv.h"

typedef struct {
    int rank, world, local_rank;
    char addr[256];
    int port;
    double timeout_s;
} mrw_dist_env;

/* Fills e from the environment. *distributed = 1 when WORLD_SIZE is set and > 1 (then RANK is required), else
 * 0 (e is a world of one). A malformed value (not a number, RANK outside [0, WORLD_SIZE), port outside
 * 1..65535) is MRW_E_ARG naming the variable. */
mrw_status mrw_dist_env_read(mrw_dist_env *e, int *distributed, mrw_error *err);

/* Rank 0: serves id[0..n) (n <= 4096) to every other rank; the others: receive it. Blocks until done or
 * e->timeout_s. */
mrw_status mrw_dist_exchange(const mrw_dist_env *e, uint8_t *id, size_t n, mrw_error *err);

/* A TCP port that was free a moment ago on this machine (bind to port 0); 0 if none could be had. */
int mrw_dist_free_port(void);

/* Runs n copies of exe (execv(exe, argv)) with WORLD_SIZE=n, LOCAL_WORLD_SIZE=n, RANK=LOCAL_RANK=i and, unless
 * already set, MASTER_ADDR=127.0.0.1 and MASTER_PORT=a free port; waits for all of them. When one fails (non-zero
 * exit or a signal) the others get SIGTERM, and SIGKILL after grace_s seconds. Returns the job's exit code: 0 when
 * every rank succeeded, else the first failure's exit code (128 + signal number for a signal), and -1 (err set)
 * if the processes could not be started. Prints "rank i ..." for a failure on stderr (prefix `who`). */
int mrw_dist_launch(int n, const char *exe, char *const argv[], double grace_s, const char *who, mrw_error *err);

#endif
