#!/usr/bin/env python3
"""Which source series' linear fit transfers to a zero-shot target (docs/FORECAST.md, "Zero-shot with the target's
sampling interval"): a ridge fit 720 -> 96 on per-window-normalised training windows of each source file alone
(and of all five pooled), evaluated on the target's test windows (every 11th for ETTm, every 2nd for ETTh) in the
training-split normalisation. An analysis, not a fixture; numpy only, a minute or two per target:

    /usr/bin/python3 tests/reference/zeroshot_sources.py ETTm1    (ETTh1, ETTh2, ETTm1 or ETTm2)
"""
import os, sys
import numpy as np
D=os.path.join(os.path.dirname(os.path.abspath(__file__)),'../../../shared/data/timeseries/')
L,H=720,96
def load(name):
    a=np.genfromtxt(D+name+'.csv',delimiter=',',skip_header=1)[:,1:]
    n=len(a)
    if name.startswith('ETTh'): tr,va,te=8640,2880,2880
    if name.startswith('ETTm'): tr,va,te=34560,11520,11520
    if name.startswith('ETT'):
        b1=(0,tr); b3=(tr+va-L,tr+va+te)
    else:
        tr=int(n*.7); te=int(n*.2); va=n-tr-te
        b1=(0,tr); b3=(n-te-L,n)
    mu=a[b1[0]:b1[1]].mean(0); sd=a[b1[0]:b1[1]].std(0)
    a=(a-mu)/sd
    return a[b1[0]:b1[1]], a[b3[0]:b3[1]]
def windows(x,stride):
    X=[];Y=[]
    for c in range(x.shape[1]):
        s=x[:,c]
        for i in range(0,len(s)-L-H+1,stride):
            X.append(s[i:i+L]);Y.append(s[i+L:i+L+H])
    return np.array(X),np.array(Y)
def norm(X,Y=None):
    m=X.mean(1,keepdims=True); sd=np.sqrt(X.var(1,keepdims=True)+1e-5)
    return (X-m)/sd, (None if Y is None else (Y-m)/sd), m, sd
def fit(sources,stride=7,lam=1e-1):
    A=np.zeros((L+1,L+1));B=np.zeros((L+1,H));n=0
    for s in sources:
        X,Y=windows(s,stride); Xn,Yn,_,sd=norm(X,Y)
        keep=sd[:,0]>1e-2   # near-constant windows (ETTh2 has some) would dominate the fit
        Xn,Yn=Xn[keep],Yn[keep]
        Xn=np.hstack([Xn,np.ones((len(Xn),1))])
        A+=Xn.T@Xn/len(Xn); B+=Xn.T@Yn/len(Xn); n+=1
    A/=n;B/=n
    return np.linalg.solve(A+lam*np.eye(L+1),B)
def ev(W,te,stride):
    X,Y=windows(te,stride); Xn,_,m,sd=norm(X)
    P=np.hstack([Xn,np.ones((len(Xn),1))])@W*sd+m
    return ((P-Y)**2).mean(), np.abs(P-Y).mean()
names=['ETTh1','ETTh2','ETTm1','ETTm2','weather','exchange_rate']
data={n:load(n) for n in names}
T=sys.argv[1] if len(sys.argv)>1 else 'ETTm1'
st=11 if T.startswith('ETTm') else 2
for srcs in [[n for n in names if n!=T],['ETTm2'],['ETTh1'],['ETTh2'],['weather'],['exchange_rate'],[T]]:
    W=fit([data[s][0] for s in srcs])
    print(T,'<-',','.join(srcs),'MSE %.4f MAE %.4f'%ev(W,data[T][1],st),flush=True)
