/**
 * `fn` over every item at once, failing as soon as one fails for good: `cancel` fires at the first failure, and each
 * call gives up what it has not done yet (HttpBackend: a request still queued behind the bound on requests in flight,
 * or waiting to retry, is never sent; one in flight is aborted where its caller takes `cancel` as its abort signal,
 * or runs to its end where the caller keeps its answer, `cancelQueued`). Every call is awaited before the first
 * error is thrown: no request reaches a server after the caller has its error, and an answer told as it came
 * (onAnswer) is told before it.
 */
export async function allOrCancel<T, R>(
  items: readonly T[],
  fn: (item: T, i: number, cancel: AbortSignal) => Promise<R>,
): Promise<R[]> {
  const stop = new AbortController();
  let first: { error: unknown } | null = null;
  const settled = await Promise.allSettled(
    items.map((x, i) =>
      fn(x, i, stop.signal).catch((error: unknown) => {
        if (!first) {
          first = { error };
          stop.abort();
        }
        throw error;
      }),
    ),
  );
  if (first) throw (first as { error: unknown }).error;
  return settled.map((r) => (r as PromiseFulfilledResult<R>).value);
}
