// The two encoder modalities; every cache key, queue job and encoder pool is of one of them.
export type Modality = 'image' | 'text'

export const MODALITIES: readonly Modality[] = ['image', 'text']
