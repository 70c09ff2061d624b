#!/usr/bin/env bash
# The exact commands that train the zoo's models. Each is resumable: run it again and it continues from the run
# folder's last checkpoint. Usage: scripts/train_zoo.sh NAME [extra tfrecog train flags, e.g. --max-seconds 3600]
set -euo pipefail
name=$1; shift
data=${TFRECOG_DATA_DIR:-../shared/data}
runs=${TFRECOG_RUNS:-../runs}  # outside the work tree, so a re-laid checkout keeps the run folders
# The DLGM entries named dlgm-bmnist-rank1* use the rank-one recognition covariance, the others the diagonal one.
case "$name" in dlgm-bmnist-rank1*) cov=rank_one ;; *) cov=diagonal ;; esac
case "$name" in
  vae-bmnist)
    tfrecog train vae --dataset binarized_mnist --data-dir "$data" --run "$runs"/vae-bmnist --epochs 3000 \
      --hidden 500 --latent-size 20 --activation tanh --estimator sgvb_b --weight-prior-scale 1.0 --verbose 2 "$@" ;;
  vae-bmnist-wake-sleep)
    tfrecog train vae --dataset binarized_mnist --data-dir "$data" --run "$runs"/vae-bmnist-wake-sleep --epochs 3000 \
      --hidden 500 --latent-size 20 --activation tanh --estimator wake_sleep --weight-prior-scale 1.0 --verbose 2 "$@" ;;
  vae-bmnist-2d)
    tfrecog train vae --dataset binarized_mnist --data-dir "$data" --run "$runs"/vae-bmnist-2d --epochs 300 \
      --hidden 500 --latent-size 2 --activation tanh --estimator sgvb_b --weight-prior-scale 1.0 --verbose 2 "$@" ;;
  vae-frey)
    tfrecog train vae --dataset frey_faces --data-dir "$data" --run "$runs"/vae-frey --epochs 3000 \
      --hidden 200 --latent-size 10 --activation tanh --estimator sgvb_b --weight-prior-scale 1.0 --verbose 2 "$@" ;;
  sbn-bmnist-200-200-200)
    tfrecog train sbn --dataset binarized_mnist --data-dir "$data" --run "$runs"/sbn-bmnist-200-200-200 --epochs 3000 \
      --set latent_sizes=[200,200,200] --estimator nvil --lr 3e-4 --baseline-lr 3e-3 --verbose 2 "$@" ;;
  fdarn-bmnist-500)
    tfrecog train fdarn --dataset binarized_mnist --data-dir "$data" --run "$runs"/fdarn-bmnist-500 --epochs 3000 \
      --set latent_sizes=[500] --estimator nvil --lr 3e-4 --baseline-lr 3e-3 --verbose 2 "$@" ;;
  sbn-bmnist-200|sbn-bmnist-500|sbn-bmnist-200-200|sbn-bmnist-200-200-500)
    sizes=[${name#sbn-bmnist-}]; sizes=${sizes//-/,}
    tfrecog train sbn --dataset binarized_mnist --data-dir "$data" --run "$runs"/"$name" --epochs 3000 \
      --set latent_sizes="$sizes" --estimator nvil --lr 3e-4 --baseline-lr 3e-3 --verbose 2 "$@" ;;
  sbn-bmnist-200-200-wake-sleep)
    tfrecog train sbn --dataset binarized_mnist --data-dir "$data" --run "$runs"/"$name" --epochs 3000 \
      --set latent_sizes=[200,200] --estimator wake_sleep --lr 3e-4 --verbose 2 "$@" ;;
  sbn-bmnist-200-wake-sleep|sbn-bmnist-500-wake-sleep|sbn-bmnist-200-200-200-wake-sleep|\
  sbn-bmnist-200-200-500-wake-sleep|fdarn-bmnist-200-wake-sleep|fdarn-bmnist-500-wake-sleep)
    # The wake-sleep column of Mnih & Gregor's Table 1: the NVIL recipes' architectures trained by wake-sleep
    family=${name%%-*}; sizes=${name#*-bmnist-}; sizes=[${sizes%-wake-sleep}]; sizes=${sizes//-/,}
    tfrecog train "$family" --dataset binarized_mnist --data-dir "$data" --run "$runs"/"$name" --epochs 3000 \
      --set latent_sizes="$sizes" --estimator wake_sleep --lr 3e-4 --verbose 2 "$@" ;;
  sbn-bmnist-200-arq|sbn-bmnist-200-200-arq|fdarn-bmnist-200-arq)
    # Table 2 of Mnih & Gregor: the NVIL recipes with autoregressive connections within each layer of q
    family=${name%%-*}; sizes=${name#*-bmnist-}; sizes=[${sizes%-arq}]; sizes=${sizes//-/,}
    tfrecog train "$family" --dataset binarized_mnist --data-dir "$data" --run "$runs"/"$name" --epochs 3000 \
      --set latent_sizes="$sizes" --set autoregressive_posterior=true --estimator nvil --lr 3e-4 \
      --baseline-lr 3e-3 --verbose 2 "$@" ;;
  sbn-bmnist-200-200-200-vimco)  # VIMCO (Mnih & Rezende 2016), K=50 samples per digit, best checkpoint by the bound
    tfrecog train sbn --dataset binarized_mnist --data-dir "$data" --run "$runs"/"$name" --epochs 3000 \
      --set latent_sizes=[200,200,200] --estimator vimco --samples 50 --lr 3e-4 --select-by iwae_bound \
      --verbose 2 "$@" ;;
  fdarn-bmnist-200)
    tfrecog train fdarn --dataset binarized_mnist --data-dir "$data" --run "$runs"/fdarn-bmnist-200 --epochs 3000 \
      --set latent_sizes=[200] --estimator nvil --lr 3e-4 --baseline-lr 3e-3 --verbose 2 "$@" ;;
  sbn-20news-50)
    tfrecog train sbn --dataset 20news --data-dir "$data" --run "$runs"/sbn-20news-50 --epochs 3000 \
      --set latent_sizes=[50] --estimator nvil --lr 3e-4 --baseline-lr 3e-3 --verbose 2 "$@" ;;
  fdarn-20news-50)
    tfrecog train fdarn --dataset 20news --data-dir "$data" --run "$runs"/fdarn-20news-50 --epochs 3000 \
      --set latent_sizes=[50] --estimator nvil --lr 3e-4 --baseline-lr 3e-3 --verbose 2 "$@" ;;
  dlgm-bmnist-rank1)
    tfrecog train dlgm --dataset binarized_mnist --data-dir "$data" --run "$runs"/dlgm-bmnist-rank1 --epochs 3000 \
      --set latent_sizes=[100,100] --set hidden_sizes=[500] --set recognition_hidden_sizes=[500] \
      --set covariance=rank_one --weight-prior-scale 1.0 --verbose 2 "$@" ;;
  dlgm-bmnist-diag)
    tfrecog train dlgm --dataset binarized_mnist --data-dir "$data" --run "$runs"/dlgm-bmnist-diag --epochs 3000 \
      --set latent_sizes=[100,100] --set hidden_sizes=[500] --set recognition_hidden_sizes=[500] \
      --set covariance=diagonal --weight-prior-scale 1.0 --verbose 2 "$@" ;;
  dlgm-bmnist-rank1-iwae5|dlgm-bmnist-diag-iwae5)  # experiment (IWAE k=5), not in the zoo: see README, DLGM
    tfrecog train dlgm --dataset binarized_mnist --data-dir "$data" --run "$runs"/"$name" --epochs 3000 \
      --set latent_sizes=[100,100] --set hidden_sizes=[500] --set recognition_hidden_sizes=[500] \
      --set covariance=$cov --estimator iwae --samples 5 --weight-prior-scale 1.0 --verbose 2 "$@" ;;
  dlgm-bmnist-rank1-td|dlgm-bmnist-diag-td)  # experiment: top-down recognition + KL warm-up over 50 epochs (25,000 updates)
    tfrecog train dlgm --dataset binarized_mnist --data-dir "$data" --run "$runs"/"$name" --epochs 3000 \
      --set latent_sizes=[100,100] --set hidden_sizes=[500] --set recognition_hidden_sizes=[500] \
      --set covariance=$cov --set recognition_structure=top_down --set kl_warmup_steps=25000 \
      --weight-prior-scale 1.0 --verbose 2 "$@" ;;
  dlgm-bmnist-diag-td0)  # experiment: top-down recognition without KL warm-up (see README, DLGM)
    tfrecog train dlgm --dataset binarized_mnist --data-dir "$data" --run "$runs"/"$name" --epochs 3000 \
      --set latent_sizes=[100,100] --set hidden_sizes=[500] --set recognition_hidden_sizes=[500] \
      --set covariance=diagonal --set recognition_structure=top_down --weight-prior-scale 1.0 --verbose 2 "$@" ;;
  dlgm-bmnist-diag-60k|dlgm-bmnist-rank1-60k)  # the 50,000-digit recipes above on train+valid (60,000 digits) for
    # the number of epochs their validation chose (diagonal 100, rank-one 159); no validation split
    [ "$cov" = rank_one ] && epochs=159 || epochs=100
    tfrecog train dlgm --dataset binarized_mnist --data-dir "$data" --run "$runs"/"$name" --epochs $epochs \
      --train-split train+valid --valid-split none \
      --set latent_sizes=[100,100] --set hidden_sizes=[500] --set recognition_hidden_sizes=[500] \
      --set covariance=$cov --weight-prior-scale 1.0 --verbose 2 "$@" ;;
  dlgm-bmnist-diag-gated|dlgm-bmnist-rank1-gated)  # the 50,000-digit recipes with gated hidden units
    # h = (W x + b) * sigmoid(V x + c) and Polyak averaging of the weights (momentum 0.999)
    tfrecog train dlgm --dataset binarized_mnist --data-dir "$data" --run "$runs"/"$name" --epochs 3000 \
      --set latent_sizes=[100,100] --set hidden_sizes=[500] --set recognition_hidden_sizes=[500] \
      --set covariance=$cov --set activation='"gated"' --ema 0.999 --weight-prior-scale 1.0 --verbose 2 "$@" ;;
  dlgm-bmnist-diag-gated-60k|dlgm-bmnist-rank1-gated-60k)  # the gated recipes on train+valid (60,000 digits) for
    # the number of epochs their validation chose on 50,000 (diagonal 51, rank-one 55); no validation split
    [ "$cov" = rank_one ] && epochs=55 || epochs=51
    tfrecog train dlgm --dataset binarized_mnist --data-dir "$data" --run "$runs"/"$name" --epochs $epochs \
      --train-split train+valid --valid-split none \
      --set latent_sizes=[100,100] --set hidden_sizes=[500] --set recognition_hidden_sizes=[500] \
      --set covariance=$cov --set activation='"gated"' --ema 0.999 --weight-prior-scale 1.0 --verbose 2 "$@" ;;
  dlgm-bmnist-diag-gated-deep|dlgm-bmnist-diag-gated-deep-td)  # experiment: the gated recipe with two hidden layers
    # of 300 in every network (the gated MLPs of Tomczak & Welling's VampPrior models), independent or top-down
    [ "$name" = dlgm-bmnist-diag-gated-deep-td ] && structure=top_down || structure=independent
    tfrecog train dlgm --dataset binarized_mnist --data-dir "$data" --run "$runs"/"$name" --epochs 3000 \
      --set latent_sizes=[100,100] --set hidden_sizes=[300,300] --set recognition_hidden_sizes=[300,300] \
      --set covariance=diagonal --set recognition_structure=$structure --set activation='"gated"' --ema 0.999 \
      --weight-prior-scale 1.0 --verbose 2 "$@" ;;
  dlgm-bmnist-diag-gated-r2)  # experiment: the gated recipe with two gated hidden layers of 500 in the recognition
    # network only (a closer q, the generative networks unchanged)
    tfrecog train dlgm --dataset binarized_mnist --data-dir "$data" --run "$runs"/"$name" --epochs 3000 \
      --set latent_sizes=[100,100] --set hidden_sizes=[500] --set recognition_hidden_sizes=[500,500] \
      --set covariance=diagonal --set activation='"gated"' --ema 0.999 --weight-prior-scale 1.0 --verbose 2 "$@" ;;
  dlgm-bmnist-diag-gated-g300|dlgm-bmnist-rank1-gated-g300)  # experiment: the gated recipe with generative
    # networks of 300 gated units (less capacity to overfit the digits), the recognition network unchanged
    tfrecog train dlgm --dataset binarized_mnist --data-dir "$data" --run "$runs"/"$name" --epochs 3000 \
      --set latent_sizes=[100,100] --set hidden_sizes=[300] --set recognition_hidden_sizes=[500] \
      --set covariance=$cov --set activation='"gated"' --ema 0.999 --weight-prior-scale 1.0 --verbose 2 "$@" ;;
  dlgm-bmnist-diag-gated-g300-60k|dlgm-bmnist-rank1-gated-g300-60k)  # the g300 recipes on train+valid (60,000
    # digits) for the epochs their validation chose on 50,000 (diagonal 72, rank-one 82); no validation split
    [ "$cov" = rank_one ] && epochs=82 || epochs=72
    tfrecog train dlgm --dataset binarized_mnist --data-dir "$data" --run "$runs"/"$name" --epochs $epochs \
      --train-split train+valid --valid-split none \
      --set latent_sizes=[100,100] --set hidden_sizes=[300] --set recognition_hidden_sizes=[500] \
      --set covariance=$cov --set activation='"gated"' --ema 0.999 --weight-prior-scale 1.0 --verbose 2 "$@" ;;
  dlgm-bmnist-diag-gated-g300-td|dlgm-bmnist-rank1-gated-g300-td|dlgm-bmnist-diag-gated-g300-td3|\
  dlgm-bmnist-rank1-gated-g300-td3|dlgm-bmnist-diag-gated-g300-td4|\
  dlgm-bmnist-diag-gated-g300-td-60k|dlgm-bmnist-rank1-gated-g300-td-60k|\
  dlgm-bmnist-diag-gated-g300-td3-60k|dlgm-bmnist-rank1-gated-g300-td3-60k|\
  dlgm-bmnist-diag-gated-g300-td3-iwae5|dlgm-bmnist-rank1-gated-g300-td3-iwae5|\
  dlgm-bmnist-diag-gated-g300-td3-r1000|dlgm-bmnist-rank1-gated-g300-td3-r1000|\
  dlgm-bmnist-diag-gated-g300-td3-r1000-60k|dlgm-bmnist-rank1-gated-g300-td3-iwae5-60k)
    # Top-down recognition q(xi_L | x) prod_l q(xi_l | x, h_{l+1}) on the g300 recipes (with independent layers the
    # first layer of the iwae5 run collapsed entirely): td two layers of 100 latents, td3 three, td4 four (experiments
    # on the 50,000 training digits). The -60k entries train on train+valid (60,000 digits, no validation split) for
    # the epochs validation chose on 50,000: td diagonal 105, rank-one 102; td3 diagonal 82, rank-one 115. The -iwae5
    # entries train td3 on the importance-weighted bound with k=5 (experiment); -r1000 widens the recognition
    # network to 1000 gated units (diagonal: best validation ELBO at epoch 90, hence 90 epochs on 60,000 digits). The rank-one -iwae5 run's
    # validation log p(x) (K=1000, first 1,000 validation digits) was best at epoch 110 of those checked (82, 91,
    # 100, 110; its validation ELBO peaked at 91), hence 110 epochs on 60,000 digits.
    case "$name" in *-td4) sizes=[100,100,100,100] ;; *-td3*) sizes=[100,100,100] ;; *) sizes=[100,100] ;; esac
    epochs=3000; split=(); objective=()
    case "$name" in
      *-td-60k) [ "$cov" = rank_one ] && epochs=102 || epochs=105 ;;
      *-td3-60k) [ "$cov" = rank_one ] && epochs=115 || epochs=82 ;;
      *-td3-r1000-60k) epochs=90 ;;
      *-td3-iwae5-60k) epochs=110 ;;
    esac
    case "$name" in *-60k) split=(--train-split train+valid --valid-split none) ;; esac
    case "$name" in *-iwae5*) objective=(--estimator iwae --samples 5) ;; esac
    recognition=[500]; case "$name" in *-r1000*) recognition=[1000] ;; esac
    tfrecog train dlgm --dataset binarized_mnist --data-dir "$data" --run "$runs"/"$name" --epochs $epochs "${split[@]}" \
      --set latent_sizes=$sizes --set hidden_sizes=[300] --set recognition_hidden_sizes=$recognition \
      --set covariance=$cov --set recognition_structure=top_down --set activation='"gated"' --ema 0.999 \
      "${objective[@]}" --weight-prior-scale 1.0 --verbose 2 "$@" ;;
  dlgm-bmnist-diag-deep)  # experiment: the dlgm-bmnist-diag recipe with two hidden layers in every MLP
    tfrecog train dlgm --dataset binarized_mnist --data-dir "$data" --run "$runs"/"$name" --epochs 3000 \
      --set latent_sizes=[100,100] --set hidden_sizes=[500,500] --set recognition_hidden_sizes=[500,500] \
      --set covariance=diagonal --weight-prior-scale 1.0 --verbose 2 "$@" ;;
  dlgm-bmnist-2d)
    tfrecog train dlgm --dataset binarized_mnist --data-dir "$data" --run "$runs"/dlgm-bmnist-2d --epochs 3000 \
      --set latent_sizes=[2] --set hidden_sizes=[500] --set recognition_hidden_sizes=[500] \
      --set covariance=diagonal --weight-prior-scale 1.0 --verbose 2 "$@" ;;
  dlgm-frey)
    tfrecog train dlgm --dataset frey_faces --data-dir "$data" --run "$runs"/dlgm-frey --epochs 5000 \
      --set latent_sizes=[10,10] --set hidden_sizes=[200] --set recognition_hidden_sizes=[200] \
      --set covariance=rank_one --set mean_activation=sigmoid --set observation_scale=predicted \
      --set recognition_structure=top_down --set activation=gated --weight-prior-scale 1.0 --verbose 2 "$@" ;;
  *) echo "unknown zoo entry $name" >&2; exit 2 ;;
esac
