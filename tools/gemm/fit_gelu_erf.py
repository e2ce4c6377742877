# The erf-GELU polynomials of src/backend/cuda/kernels/gemm_epilogue.cu (ge_gelu_erf, ge_gelu_erf_bf16):
# Q(v) ~ log2(U Phi(-v U)), U = 13.3, fitted towards minimax (optionally weighted: accurate on |x| <= a, the
# tail weighted wt), coefficients rounded to f32 one at a time with the lower ones refitted, then checked in an f32
# emulation of ge_gelu_log2phi against float64. Needs numpy. Run: python3 tools/gemm/fit_gelu_erf.py
import numpy as np, math
from math import erfc, sqrt, log2
def Phi_neg(u): return 0.5*erfc(u/sqrt(2))
def f(v): return np.array([log2(13.3)+ math.log(Phi_neg(x*13.3))/math.log(2) for x in v])
N=8000
v=np.cos(np.linspace(0,np.pi,N))*0.5+0.5
y=f(v)
def fit(d, a=1.0, wt=1.0, iters=300):
    base=np.where(v<=a,1.0,wt); w=base.copy()
    for it in range(iters):
        A=np.vander(v,d+1)
        c,*_=np.linalg.lstsq(A*w[:,None],y*w,rcond=None)
        e=(A@c-y)*base
        w=w*(np.abs(e)/np.abs(e).max())**0.2+1e-14
    # round to f32 one coefficient at a time (highest first), refit the rest
    c=list(c); fixed=[]
    for i in range(d+1):
        ci=np.float32(c[i]); fixed.append(ci)
        if i<d:
            rem=y-np.polyval(np.array(fixed+[0]*(d-i),dtype=np.float64),v)
            A=np.vander(v,d-i)
            w2=np.ones(N)*base
            for it in range(100):
                cc,*_=np.linalg.lstsq(A*w2[:,None],rem*w2,rcond=None)
                e=(A@cc-rem)*base
                w2=w2*(np.abs(e)/np.abs(e).max())**0.2+1e-14
            c=fixed+list(cc)
    return np.array(fixed,dtype=np.float32)
def emu(c32):
    xs=np.concatenate([np.linspace(-13.3,13.3,400001), np.linspace(-20,-13.3,1000), [-1e30, 1e30]]).astype(np.float32)
    vv=np.minimum(np.abs(xs)*np.float32(1/13.3), np.float32(1)).astype(np.float32)
    q=c32[0]
    for ci in c32[1:]: q=(q*vv+ci).astype(np.float32)
    with np.errstate(over='ignore', under='ignore'):
        ex=np.exp2(q.astype(np.float64)).astype(np.float32); ex[q<-126]=0
        res=(np.maximum(xs,0)-vv*ex).astype(np.float32)
    ref=np.array([x*(1-Phi_neg(x)) if x>=0 else -(-x)*Phi_neg(-x) for x in xs.astype(np.float64)])
    rel=np.abs(res-ref)/np.maximum(np.abs(ref),1e-300)
    # (below x = -13 the results underflow to 0 in f32: a relative error of 1 there)
    for lo in [-6,-8,-13.3]:
        mm=(xs>lo)&(np.abs(ref)>0)
        print('   rel err x>%g: %.2e'%(lo, rel[mm].max()), end='')
    print('   abs err x<-8: %.1e, f(-inf)=%g'%(np.abs(res-ref)[xs<-8].max(), res[-2]))
# bf16: degree 6 on |x| <= 8 (tail weight 0.02); the degree-7 uniform fit it replaced; f16: degree 8.
for d,a,wt in [(6,8/13.3,0.02),(7,1,1),(8,1,1)]:
    c=fit(d,a,wt)
    print(f'd{d} a={a*13.3:.1f}: coeffs', ', '.join('%.10e'%x for x in c))
    emu(c)
